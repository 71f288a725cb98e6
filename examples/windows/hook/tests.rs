//! Unit tests (Windows, run under Wine).
