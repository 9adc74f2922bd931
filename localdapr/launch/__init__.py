"""Starting sidecars and apps: the `python -m localdapr` command line, the run file and the launcher."""
