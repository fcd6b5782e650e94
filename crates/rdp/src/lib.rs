//! The RDP wire: turns a byte stream into a Terminal. Knows nothing of session policy.
