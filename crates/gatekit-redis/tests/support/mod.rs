//! A real `redis-server` on a free loopback port, killed on drop (from the workspace's
//! test kit, shared with the gateway's tests).

#![allow(unreachable_pub)]

pub use gatekit_testkit::redis::RedisServer;
