//! The census of live client connections: how many there are, in total and per
//! client address, and the slot each one holds in it from accept to drop, so
//! that `max_connections` and `max_connections_per_ip` hold whatever path
//! (a panic included) ends a connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// The live client connections, in total and per client address (see
/// [`client_key`]).
#[derive(Debug, Default)]
pub(crate) struct Census {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// What `max_connections_per_ip` counts a client under: its IPv4 address (an
/// IPv4-mapped IPv6 address is that IPv4 client), or its IPv6 /64. One IPv6
/// host is usually given a whole /64 and can pick any address in it, so
/// counting per address would be no cap at all.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// Why a new connection was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` reached.
    Total,
    /// `max_connections_per_ip` reached for this address.
    PerIp,
    /// The open-file limit is near: the rest is kept for the apps.
    Descriptors,
}

impl Census {
    /// Connections held now.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// One connection's place in the [`Census`]; given back when dropped, whatever
/// path (panic included) drops it.
#[derive(Debug)]
pub(crate) struct Slot {
    census: Arc<Census>,
    ip: IpAddr,
}

impl Slot {
    /// Takes a slot for a connection from `ip` unless a cap is reached. Called at
    /// accept only, so the per-IP lock is never on the request path.
    pub(crate) fn acquire(
        census: &Arc<Census>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Refusal> {
        let ip = client_key(ip);
        let mut per_ip = census.per_ip.lock();
        if census.total.load(Ordering::Relaxed) >= max {
            return Err(Refusal::Total);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        census.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            census: census.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.census.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.census.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_ip_cap_leaves_room_for_other_addresses() {
        let census = Arc::new(Census::default());
        let a1 = Slot::acquire(&census, ip(1), 3, 2).expect("first");
        let _a2 = Slot::acquire(&census, ip(1), 3, 2).expect("second");
        assert_eq!(
            Slot::acquire(&census, ip(1), 3, 2).err(),
            Some(Refusal::PerIp)
        );
        let _b1 = Slot::acquire(&census, ip(2), 3, 2).expect("other address");
        assert_eq!(
            Slot::acquire(&census, ip(3), 3, 2).err(),
            Some(Refusal::Total)
        );
        drop(a1);
        assert_eq!(census.total(), 2);
        assert!(Slot::acquire(&census, ip(1), 3, 2).is_ok());
    }

    #[test]
    fn client_key_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() {
        let v6 = |s: &str| -> IpAddr { s.parse().expect("test address") };
        let table = [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("2001:db8:1:2::1", "2001:db8:1:2::"),
            ("2001:db8:1:3::1", "2001:db8:1:3::"),
            ("::1", "::"),
            ("fe80::1", "fe80::"),
        ];
        for (ip, key) in table {
            assert_eq!(client_key(v6(ip)), v6(key), "{ip}");
        }
    }

    #[test]
    fn per_ip_cap_counts_one_ipv6_64_as_one_client() {
        let census = Arc::new(Census::default());
        let a: IpAddr = "2001:db8::1".parse().expect("addr");
        let b: IpAddr = "2001:db8::2:3".parse().expect("addr");
        let other: IpAddr = "2001:db8:0:1::1".parse().expect("addr");
        let _a = Slot::acquire(&census, a, 10, 2).expect("first");
        let _b = Slot::acquire(&census, b, 10, 2).expect("second, same /64");
        let third: IpAddr = "2001:db8::ffff".parse().expect("addr");
        assert_eq!(
            Slot::acquire(&census, third, 10, 2).err(),
            Some(Refusal::PerIp)
        );
        assert!(Slot::acquire(&census, other, 10, 2).is_ok(), "another /64");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("addr");
        let _m = Slot::acquire(&census, mapped, 10, 1).expect("mapped");
        assert_eq!(
            Slot::acquire(&census, ip(1), 10, 1).err(),
            Some(Refusal::PerIp),
            "a mapped address and its IPv4 are one client"
        );
    }

    #[test]
    fn dropping_every_slot_empties_the_census() {
        let census = Arc::new(Census::default());
        let slots: Vec<Slot> = (0..5)
            .filter_map(|i| Slot::acquire(&census, ip(i), 10, 10).ok())
            .collect();
        assert_eq!(census.total(), 5);
        drop(slots);
        assert_eq!(census.total(), 0);
        assert!(census.per_ip.lock().is_empty());
    }
}
