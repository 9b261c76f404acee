//! The limits' pure parts on virtual time: buckets, keys, the per-address
//! table (also from many threads), the log limiter.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::config::Config;

fn rate(per_sec: u64, burst: u64) -> Rate {
    Rate::new(per_sec, burst).expect("a rate")
}

#[test]
fn a_rate_of_zero_is_off_and_a_burst_of_zero_is_twice_the_rate() {
    assert_eq!(Rate::new(0, 5), None);
    assert_eq!(rate(10, 0).burst, 20);
    assert_eq!(rate(10, 3).burst, 3);
}

#[test]
fn a_full_bucket_gives_its_burst_then_one_token_per_interval() {
    let r = rate(10, 5); // one token per 100 ms
    let mut b = TokenBucket::full(&r, 1000);
    for i in 0..5 {
        assert!(b.try_take(&r, 1000, 1), "token {i} of the burst");
    }
    assert!(!b.try_take(&r, 1000, 1), "empty");
    assert!(!b.try_take(&r, 1099, 1), "99 ms later: 0.99 of a token");
    assert!(b.try_take(&r, 1100, 1), "100 ms: one token");
    assert!(!b.try_take(&r, 1100, 1));
    // A long silence refills up to the burst, not beyond.
    assert!(b.allows(&r, 1_000_000, 1));
    assert_eq!(b.tokens(), 5);
    for _ in 0..5 {
        assert!(b.try_take(&r, 1_000_000, 1));
    }
    assert!(!b.try_take(&r, 1_000_000, 1));
}

#[test]
fn fractions_of_a_token_accumulate_exactly() {
    // 3 tokens a second: 1/3 of a token every 111.1 ms, kept in thousandths.
    let r = rate(3, 3);
    let mut b = TokenBucket::full(&r, 0);
    assert!(b.try_take(&r, 0, 3), "the burst");
    let mut granted = 0;
    for now in 1..=10_000 {
        if b.try_take(&r, now, 1) {
            granted += 1;
        }
    }
    assert_eq!(granted, 30, "3 a second over 10 s, whatever the step");
}

#[test]
fn a_refused_take_costs_nothing_and_time_never_runs_backwards() {
    let r = rate(1000, 10);
    let mut b = TokenBucket::full(&r, 500);
    assert!(b.try_take(&r, 500, 5));
    assert!(!b.try_take(&r, 500, 6), "more than there is");
    assert_eq!(b.tokens(), 5, "and nothing was taken");
    assert!(b.try_take(&r, 500, 5));
    assert!(!b.try_take(&r, 400, 1), "an earlier time refills nothing");
    assert!(b.try_take(&r, 501, 1), "1 ms at 1000/s: one token");
}

#[test]
fn a_take_above_the_burst_needs_a_full_bucket_and_leaves_a_debt() {
    let r = rate(1000, 2000); // bytes: 1000/s, bucket of 2000
    let mut b = TokenBucket::full(&r, 0);
    assert!(
        b.try_take(&r, 0, 5000),
        "a full bucket lets one big packet through"
    );
    assert_eq!(b.tokens(), -3000);
    assert!(!b.try_take(&r, 2999, 1), "the debt is paid back first");
    assert!(b.try_take(&r, 3001, 1));
    assert!(!b.allows(&r, 4000, 5000), "not full yet: 999 of 2000");
    assert!(b.allows(&r, 5001, 5000));
}

#[test]
fn a_lower_burst_caps_what_the_bucket_holds() {
    let mut b = TokenBucket::full(&rate(10, 100), 0);
    let lower = rate(10, 5);
    assert!(b.try_take(&lower, 0, 5));
    assert!(!b.try_take(&lower, 0, 1), "5 of the 100 are left to take");
}

#[test]
fn huge_rates_and_gaps_saturate_instead_of_overflowing() {
    let r = rate(1 << 40, 1 << 41);
    let mut b = TokenBucket::full(&r, 0);
    assert!(b.try_take(&r, 0, 1 << 41));
    assert!(b.try_take(&r, u64::MAX / 2, 1 << 41), "refilled, capped");
    assert!(!b.try_take(&r, u64::MAX / 2, 1));
}

#[test]
fn a_request_needs_both_buckets_and_a_refusal_takes_from_neither() {
    let l = Config::from_toml(
        "[limits]\nrequests_per_sec = 10\nrequests_burst = 3\nbytes_per_sec = 1000\nbytes_burst = 1000\n",
        "x",
    )
    .unwrap()
    .limits;
    let rules = LimitRules::from_config(&l);
    assert!(rules.per_connection());
    let mut c = ConnLimits::new(&rules, 0, None);
    assert!(c.admit(&rules, 0, 600));
    assert!(!c.admit(&rules, 0, 600), "bytes: 400 left");
    assert_eq!(
        c.requests.tokens(),
        2,
        "the refused request took no request token"
    );
    assert!(c.admit(&rules, 0, 400));
    assert!(
        c.admit(&rules, 0, 0),
        "the third request of the burst, no payload"
    );
    assert!(!c.admit(&rules, 0, 0), "requests: the burst of 3 is spent");
    assert_eq!(c.bytes.tokens(), 0);
    assert!(c.admit(&rules, 100, 100), "100 ms: a request and 100 bytes");
    assert!(!c.admit(&rules, 100, 0));
    // Off limits never refuse and keep no state.
    let off = LimitRules::from_config(&Config::default().limits);
    assert!(!off.per_connection());
    assert_eq!((off.max_inflight, off.accepts), (256, None));
    let mut c = ConnLimits::new(&off, 0, None);
    for _ in 0..1000 {
        assert!(c.admit(&off, 0, 1 << 20));
    }
}

#[test]
fn accepts_refill_a_second_s_worth() {
    let l = Config::from_toml("[limits]\naccepts_per_sec = 100\n", "x")
        .unwrap()
        .limits;
    let r = LimitRules::from_config(&l).accepts.unwrap();
    assert_eq!((r.per_sec, r.burst), (100, 100));
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ipv4_counts_by_address_and_ipv6_by_its_64_prefix() {
    assert_eq!(IpKey::of(ip("192.0.2.7")), IpKey::V4(0xc000_0207));
    assert_ne!(IpKey::of(ip("192.0.2.7")), IpKey::of(ip("192.0.2.8")));
    assert_eq!(
        IpKey::of(ip("::ffff:192.0.2.7")),
        IpKey::of(ip("192.0.2.7")),
        "IPv4-mapped on a dual-stack listener is the IPv4 address"
    );
    let a = IpKey::of(ip("2001:db8:1:2::1"));
    assert_eq!(
        a,
        IpKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
        "same /64"
    );
    assert_ne!(a, IpKey::of(ip("2001:db8:1:3::1")), "the next /64");
    assert_eq!(a, IpKey::V6(0x2001_0db8_0001_0002));
    assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    assert_eq!(IpKey::of(ip("::1")).to_string(), "::/64");
    assert_eq!(IpKey::of(ip("10.1.2.3")).to_string(), "10.1.2.3");
}

#[test]
fn the_table_counts_per_key_up_to_its_max_and_forgets_empty_keys() {
    let t = PerIpTable::new(2);
    let (a, b) = (IpKey::of(ip("10.0.0.1")), IpKey::of(ip("2001:db8::5")));
    assert!(t.acquire(a) && t.acquire(a));
    assert!(!t.acquire(a), "a third from the same address");
    assert_eq!(t.count(a), 2, "a refusal counts nothing");
    assert!(t.acquire(b), "other keys are independent");
    assert!(
        t.acquire(IpKey::of(ip("2001:db8::6"))),
        "same /64: the second of two"
    );
    assert!(!t.acquire(IpKey::of(ip("2001:db8::7"))));
    t.release(a);
    assert!(t.acquire(a), "room again after a release");
    t.release(a);
    t.release(a);
    t.release(b);
    t.release(b);
    assert_eq!(t.keys(), 0, "no entry outlives its connections");
    t.release(a); // an extra release is harmless
    assert_eq!(t.count(a), 0);
}

#[test]
fn a_new_maximum_holds_for_new_connections_and_counted_ones_are_still_released() {
    let t = PerIpTable::new(0);
    let a = IpKey::of(ip("10.0.0.1"));
    assert!(t.acquire(a), "off: not counted");
    t.set_max(1);
    assert!(t.acquire(a), "on: the first counted");
    assert!(!t.acquire(a));
    t.set_max(0);
    t.release(a);
    assert_eq!(t.keys(), 0, "released after the limit went off");
    t.set_max(2);
    assert!(t.acquire(a) && t.acquire(a) && !t.acquire(a));
}

#[test]
fn mqtt_keeps_the_smaller_in_flight_cap() {
    let mut l = Config::default().limits;
    assert_eq!(LimitRules::from_config(&l).mqtt_inflight(20), 20);
    l.max_inflight = 5;
    assert_eq!(LimitRules::from_config(&l).mqtt_inflight(20), 5);
    l.max_inflight = 0;
    assert_eq!(LimitRules::from_config(&l).mqtt_inflight(20), 20);
}

#[test]
fn an_off_table_counts_nothing() {
    let t = PerIpTable::new(0);
    let a = IpKey::of(ip("10.0.0.1"));
    for _ in 0..100 {
        assert!(t.acquire(a));
    }
    assert!(!t.is_on());
    assert_eq!(t.keys(), 0);
}

#[test]
fn shards_acquiring_at_once_never_exceed_the_max() {
    let t = Arc::new(PerIpTable::new(50));
    let key = IpKey::of(ip("10.9.9.9"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || (0..1000).filter(|_| t.acquire(key)).count())
        })
        .collect();
    let got: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(got, 50);
    assert_eq!(t.count(key), 50);
}

#[test]
fn log_every_lets_one_line_a_second_through_and_counts_the_rest() {
    let mut l = LogEvery::default();
    assert_eq!(l.allow(0), Some(0));
    for now in [1, 10, 999] {
        assert_eq!(l.allow(now), None);
    }
    assert_eq!(l.allow(1000), Some(3), "three held back");
    assert_eq!(l.allow(1500), None);
    assert_eq!(l.allow(5000), Some(1));
}
