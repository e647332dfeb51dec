//! The `[video]` section: the media plane's address, STUN and TURN servers.

use super::*;

#[test]
fn the_video_address_must_be_one_other_sites_can_send_to() {
    assert_eq!(parse(&full()).unwrap().video, None, "off without [video]");
    let with_video = |listen: &str| format!("{}\n[video]\nlisten = \"{listen}\"\n", full());
    assert_eq!(
        parse(&with_video("192.0.2.10:7401")).unwrap().video,
        Some(VideoConfig::on("192.0.2.10:7401".parse().unwrap()))
    );
    assert_refused(
        &with_video("0.0.0.0:7401"),
        &["video.listen", "listens everywhere"],
    );
    assert_refused(&with_video("camera"), &["video.listen", "not an address"]);
}

#[test]
fn stun_servers_are_host_and_port_and_the_stun_service_an_address() {
    let with_stun = |servers: &str| {
        format!(
            "{}\n[video]\nlisten = \"192.0.2.10:7401\"\nstun = [{servers}]\n",
            full()
        )
    };
    let config = parse(&with_stun(
        "\"stun.region.example:3478\", \"192.0.2.1:3478\", \"[2001:db8::1]:3478\"",
    ))
    .unwrap();
    assert_eq!(
        config.video.unwrap().stun,
        [
            "stun.region.example:3478",
            "192.0.2.1:3478",
            "[2001:db8::1]:3478"
        ]
    );
    for bad in [
        "\"stun.region.example\"",
        "\":3478\"",
        "\"stun.example:0\"",
        "\"a:b:c\"",
    ] {
        assert_refused(&with_stun(bad), &["video.stun[0]", "host:port"]);
    }
    assert_refused(
        &with_stun("\"192.0.2.1:3478\", \"nope\""),
        &["video.stun[1]"],
    );

    let with_service = |listen: &str| format!("{}\n[stun]\nlisten = \"{listen}\"\n", full());
    assert_eq!(parse(&full()).unwrap().stun_listen, None);
    assert_eq!(
        parse(&with_service("0.0.0.0:3478")).unwrap().stun_listen,
        Some("0.0.0.0:3478".parse().unwrap())
    );
    assert_refused(&with_service("3478"), &["stun.listen", "not an address"]);
}

#[test]
fn turn_servers_need_an_address_and_credentials_and_relay_only_needs_one() {
    let with_turn =
        |turn: &str| format!("{}\n[video]\nlisten = \"192.0.2.10:7401\"\n{turn}", full());
    let server = |addr: &str, user: &str, password: &str| {
        format!(
            "[[video.turn]]\nserver = \"{addr}\"\nusername = \"{user}\"\npassword = \"{password}\"\n"
        )
    };
    let two = format!(
        "relay_only = true\n{}{}",
        server("turn.region.example:3478", "district-7", "s3cret"),
        server("192.0.2.2:3478", "district-7", "other")
    );
    let video = parse(&with_turn(&two)).unwrap().video.unwrap();
    assert!(video.relay_only);
    assert_eq!(
        video
            .turn
            .iter()
            .map(|t| t.server.as_str())
            .collect::<Vec<_>>(),
        ["turn.region.example:3478", "192.0.2.2:3478"]
    );
    assert_eq!(video.turn[0].password, "s3cret");
    assert!(
        !format!("{video:?}").contains("s3cret"),
        "a password stays out of logs"
    );
    assert_refused(
        &with_turn(&server("turn.region.example", "u", "p")),
        &["video.turn[0].server", "host:port"],
    );
    assert_refused(
        &with_turn(&server("192.0.2.2:3478", "", "p")),
        &["video.turn[0].username"],
    );
    assert_refused(
        &with_turn(&server("192.0.2.2:3478", "u", "")),
        &["video.turn[0].password"],
    );
    assert_refused(
        &with_turn("relay_only = true\n"),
        &["video.relay_only", "TURN server"],
    );
}
