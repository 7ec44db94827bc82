//! Integration tests of the tenet-agent binary.
