"""Secret store components: secretstores.local.file and secretstores.local.env."""
