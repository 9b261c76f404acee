//! Start-up (in progress)
