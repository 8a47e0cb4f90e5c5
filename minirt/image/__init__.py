"""OCI images: reading image archives and unpacking their layers. No privileges needed."""
