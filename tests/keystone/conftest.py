"""Keystone's trust calls replaced by recorders (``no_keystone``), for every test here."""

from tests.keystone.test_keystone_unit import no_keystone  # noqa: F401 - the fixture
