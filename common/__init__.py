"""What models/, data/ and cmi/ share, which are otherwise independent of each other: files written so that a
kill leaves them whole, one-line error reasons, and the error of a run that cannot go on. It imports nothing of
the project."""
