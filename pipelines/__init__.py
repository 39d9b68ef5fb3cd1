"""botyard pipelines, their local runner and the ``botyard`` command line."""
