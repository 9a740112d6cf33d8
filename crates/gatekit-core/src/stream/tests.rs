//! Stream data plane tests: real sockets, real TLS.
