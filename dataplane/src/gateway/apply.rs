//! Applying the control thread's table messages to a node: the one place
//! that turns a [`ControlMsg`] into a change of SAs, owners, SPD, routes or
//! neighbours, shared by the DPDK worker and the tests that run nodes on
//! heap buffers.

use crate::buf::PacketBuf;

use super::msg::{ControlMsg, Retired};
use super::node::Node;

impl ControlMsg {
    /// Applies a message that changes `node`'s tables. `Ok` carries what
    /// the change replaced, to be freed off the data path; `Err` hands
    /// back the messages that need more than the node (a packet pool, a
    /// reply queue, the worker's own state).
    pub fn apply_to<B: PacketBuf>(self, node: &mut Node<B>) -> Result<Option<Retired>, ControlMsg> {
        Ok(match self {
            ControlMsg::InstallOutbound { slot, sa } => {
                node.install_outbound(slot, sa).map(Retired::Outbound)
            }
            ControlMsg::RemoveOutbound { slot } => {
                node.remove_outbound(slot).map(Retired::Outbound)
            }
            ControlMsg::InstallInbound(sa) => node.install_inbound(sa).map(Retired::Inbound),
            ControlMsg::RemoveInbound(spi) => node.remove_inbound(spi).map(Retired::Inbound),
            ControlMsg::OutboundOwner { slot, worker } => {
                node.set_outbound_owner(slot, worker);
                None
            }
            ControlMsg::InboundOwner { spi, worker } => {
                node.set_inbound_owner(spi, worker);
                None
            }
            ControlMsg::SetSpd(mut spd) => {
                *spd = node.set_spd(*spd);
                Some(Retired::Spd(spd))
            }
            ControlMsg::SetRoutes(routes) => {
                node.set_routes(*routes);
                None
            }
            ControlMsg::SetStaticNeighbours(statics) => {
                node.set_static_neighbours(&statics);
                None
            }
            ControlMsg::SetIcmpRateLimit { per_second, burst } => {
                node.set_icmp_rate_limit(per_second, burst);
                None
            }
            ControlMsg::Spares(spares) => {
                let unused = node.give_spares(*spares);
                (!unused.is_empty()).then(|| Retired::Tables(Box::new(unused)))
            }
            ControlMsg::Neighbour { ip, mac, iface } => {
                node.learn_neighbour(ip, mac, iface);
                None
            }
            other => return Err(other),
        })
    }
}
