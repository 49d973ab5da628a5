//! escape (to be written)
