"""One module per AWS service: each owns its request limits, wire codec and error mapping."""
