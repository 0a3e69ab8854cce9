"""What models/, data/ and cmi/ share, which are otherwise independent of each other: files written so that a
kill leaves them whole, and one-line error reasons. It imports nothing of the project."""
