"""The `robust` command line: a thin click layer over the library. `main` holds the group
and the training and sweep commands; the other commands live beside it by subject."""
