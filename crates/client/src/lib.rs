//! A headless RDP client: connects, decodes to RGBA, sends keys and mouse, saves PNGs.
