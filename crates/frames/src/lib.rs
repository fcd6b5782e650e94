//! The pixel path from a desktop to its terminals: damage, encoding once per codec profile, fan-out.
