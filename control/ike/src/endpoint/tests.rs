//! What the IKE SA's states let each exchange reach.

use super::*;
use crate::tests::util::Pair;
use crate::tests::{ESP, IKE};

/// Before IKE_SA_INIT completes there are no keys to reach; once it has,
/// the D-H private value is gone with the InitSent state; once IKE_AUTH
/// has, so are the octets it signed.
#[test]
fn ike_keys_exist_only_from_the_state_that_made_them() {
    let mut p = Pair::with(300, &[IKE[0]], &[ESP[0]]);
    let id = p.a.initiate(p.now);
    let sa = &p.a.sas[&id.0];
    assert_eq!(sa.state(), State::InitSent);
    assert!(sa.sk().is_none());
    assert!(p.a.ike_sa_secrets(id).is_none(), "no keys to log yet");
    let req = p.a.poll_transmit().unwrap();
    crate::tests::util::deliver_to(&mut p.b, p.now, &req);
    let resp = p.b.poll_transmit().unwrap();
    crate::tests::util::deliver_to(&mut p.a, p.now, &resp);
    let sa = &p.a.sas[&id.0];
    assert_eq!(sa.state(), State::AuthSent);
    assert!(matches!(&sa.phase, Phase::Keyed(_)));
    assert!(sa.awaiting_auth().is_some());
    assert!(p.a.ike_sa_secrets(id).is_some());
    assert!(p.run_until(10_000, |p| p.up()));
    let sa = &p.a.sas[&id.0];
    assert_eq!(sa.state(), State::Established);
    assert!(sa.awaiting_auth().is_none(), "IKE_SA_INIT octets dropped");
    assert_eq!(p.b.half_open(), 0);
}

/// A response handler run against an IKE SA in another state refuses it,
/// counts it, and changes nothing: an IKE_AUTH response to an established
/// SA finds no IKE_SA_INIT octets to check its AUTH against.
#[test]
fn ike_responses_for_another_state_are_refused_and_counted() {
    let mut p = Pair::with(301, &[IKE[0]], &[ESP[0]]);
    let id = p.a.initiate(p.now);
    assert!(p.run_until(10_000, |p| p.up()));
    let children = p.a.child_sas();
    while p.a.poll_event().is_some() {}
    let mut sa = p.a.sas.remove(&id.0).unwrap();
    let forged = [Payload::IdR(p.a.config.remote_id.clone())];
    p.a.on_auth_response(&mut sa, p.now, 0x4242, &forged);
    let mut init = IkeSa::new(7, true, sa.local, sa.remote, sa_init_phase(&mut p), p.now);
    p.a.on_response(
        &mut init,
        p.now,
        sa.local,
        sa.remote,
        Request::Auth { child_spi: 1 },
        vec![],
    );
    assert_eq!(init.state(), State::InitSent);
    assert!(!init.removed);
    let counted =
        p.a.stats
            .protocol_errors
            .get(ProtocolError::UnexpectedResponse);
    assert_eq!(counted, 2);
    assert_eq!(sa.state(), State::Established);
    assert!(!sa.removed);
    assert_eq!(p.a.stats.auth_failures, 0);
    assert!(
        p.a.poll_event().is_none(),
        "no event: {:?}",
        p.a.poll_event()
    );
    p.a.sas.insert(id.0, sa);
    assert_eq!(p.a.child_sas(), children);
}

fn sa_init_phase(p: &mut Pair) -> Phase {
    let (dh, _) = DhSecret::generate(DhGroup::Ecp256, &mut *p.a.rng).unwrap();
    Phase::InitSent(InitSent {
        ni: vec![1; 32],
        dh,
        cookie: None,
        restarts: 0,
        error: None,
        request: Vec::new(),
    })
}
