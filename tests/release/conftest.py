"""A released project, made once per session (releaseproject.py); tests build bundles from it and restore what
they change."""

import pytest

from releaseproject import ReleaseProject, make_release_project


@pytest.fixture(scope="session")
def release_project(tmp_path_factory, demo_site, demo_server) -> ReleaseProject:
    with make_release_project(tmp_path_factory.mktemp("release-project"), demo_site, demo_server) as project:
        yield project
