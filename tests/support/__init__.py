"""Support code of the unit tests: the recording Pulumi mocks (``mocks``), the program the stack runs
and kubeconfigs for it (``program``), and certificates built by hand (``certs``). ``conftest.py`` holds
the fixtures."""
