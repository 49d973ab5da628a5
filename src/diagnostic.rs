//! diagnostic (to be written)
