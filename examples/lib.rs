//! Support shared by the examples. The examples themselves are in this folder; see
//! `README.md` beside this file.
