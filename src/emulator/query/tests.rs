//! End-to-end tests of the query language: text in, matches and rows out.
