"""`make demo`, `make up`, `make down`: a private server with sqlml and the local services."""
