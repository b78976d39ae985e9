"""Faust agents: thin loops over core/ and infra/ (arrive with the stream pipeline)."""
