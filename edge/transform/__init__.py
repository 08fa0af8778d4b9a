"""Transformations: the URL language (`options`), format choice (`formats`), libvips (`render`)."""
