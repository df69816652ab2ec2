"""The openstack client plugin (``openstack backup ...``): a face over the services."""
