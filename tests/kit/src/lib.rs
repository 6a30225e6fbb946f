//! The kit permitgate's tests and its load tool share: the demo's data made once per
//! process and copied ([`demo_data`]), a gateway in the process on loopback with mTLS
//! clients ([`gateway`], [`client`]), gateways as processes ([`process`]), and the one
//! config editor ([`config_edit`]). Everything real: sockets, TLS, certificates.

pub mod client;
pub mod config_edit;
pub mod demo_data;
pub mod gateway;
pub mod process;
