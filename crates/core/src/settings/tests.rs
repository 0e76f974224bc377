use std::time::Duration;

use super::DefaultValue::{Required, Value};
use super::*;

setting!(NAME, "NAME", Required, "A required text.");
setting!(COUNT, "COUNT", Value("3"), "A bounded number.");
setting!(WAIT_MS, "WAIT_MS", Value("250"), "A duration.");
setting!(TOKEN, "TOKEN", DefaultValue::Unset, "A secret.", secret);

/// A group with one required setting, one bounded and one secret, in two sections.
#[derive(Debug)]
struct Group {
    name: String,
    count: u32,
    wait: Duration,
    token: Option<secrecy::SecretString>,
}

impl ReadSettings for Group {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("First");
        let name = r.optional::<String>(&NAME);
        let count = r.bounded(&COUNT, 1, 10);
        r.section("Second");
        let wait = r.millis(&WAIT_MS, 1, 1000);
        let token = r.secret(&TOKEN);
        Some(Self {
            name: name?,
            count,
            wait,
            token,
        })
    }
}

#[test]
fn defaults_come_from_the_specs_and_values_from_the_variables() {
    let g = from_vars::<Group, _, _, _>([("NAME", "x")])
        .unwrap()
        .settings;
    assert_eq!(
        (g.name.as_str(), g.count, g.wait),
        ("x", 3, Duration::from_millis(250))
    );
    assert!(g.token.is_none());
    let g = from_vars::<Group, _, _, _>([("NAME", "x"), ("COUNT", "7"), ("TOKEN", "t0k")])
        .unwrap()
        .settings;
    assert_eq!(g.count, 7);
    assert!(g.token.is_some());
}

#[test]
fn every_problem_is_reported_at_once_with_a_suggestion() {
    let e = from_vars::<Group, _, _, _>([
        ("ENVIRONMENT", "moon"),
        ("COUNT", "11"),
        ("WAIT_MS", "soon"),
    ])
    .unwrap_err();
    let named: Vec<&str> = e.problems.iter().map(|p| p.setting).collect();
    assert_eq!(named, ["ENVIRONMENT", "NAME", "COUNT", "WAIT_MS"]);
    assert!(e.problems.iter().all(|p| p.suggestion.is_some()), "{e}");
    assert!(
        e.to_string()
            .starts_with("invalid configuration: 4 problems")
    );
}

#[test]
fn the_environment_is_read_first_and_governs_the_rest() {
    let vars = HashMap::from([("ENVIRONMENT".to_owned(), "prod".to_owned())]);
    let r = Reader::new(&vars);
    assert_eq!(r.environment(), Environment::Production);
    assert!(r.environment().is_production());
    assert_eq!(
        Reader::new(&HashMap::new()).environment(),
        Environment::Development
    );
}

#[test]
fn documented_lists_each_setting_once_in_order_under_its_section() {
    let listed: Vec<(&str, &str)> = documented::<Group>()
        .iter()
        .map(|d| (d.section, d.spec.name))
        .collect();
    assert_eq!(
        listed,
        [
            ("General", "ENVIRONMENT"),
            ("First", "NAME"),
            ("First", "COUNT"),
            ("Second", "WAIT_MS"),
            ("Second", "TOKEN")
        ]
    );
}

#[test]
fn defaults_fail_only_for_groups_with_required_settings() {
    assert!(defaults::<Group>().is_err());
    let wait = with_defaults(|r| r.millis(&WAIT_MS, 1, 1000));
    assert_eq!(wait, Duration::from_millis(250));
}

#[test]
fn loopback_hosts_are_recognised() {
    for host in ["localhost", "127.0.0.1", "::1", "[::1]", "127.1.2.3"] {
        assert!(is_loopback_host(host), "{host}");
    }
    for host in ["db.example", "10.0.0.1", "::2"] {
        assert!(!is_loopback_host(host), "{host}");
    }
}
