//! Session and admission rules as pure state machines: no I/O, no clock reads.
