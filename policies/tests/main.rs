//! Integration tests of the policy loader.
