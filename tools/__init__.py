"""Command-line tools. A package only so that tests can import them (``import tools.train``)."""
