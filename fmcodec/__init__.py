"""fmcodec: a feature-map transform codec for CNN accelerators."""
