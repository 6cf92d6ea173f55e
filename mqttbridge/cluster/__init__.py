"""Several instances on one base topic (CONTRACT section 10): who is alive, who serves which vehicle, handovers.

Each instance announces itself, retained, on ``<base>/bridge/instances/<id>`` (``online``; ``offline`` is the will
of its connection) and ``<base>/bridge/instances/<id>/info`` (``{"vins": [...], "heartbeat": ..., "run": ...}``,
renewed every ``takeover_s / 4``). Every instance lists every vehicle of the accounts; a vehicle is served (read,
published, announced to Home Assistant, commanded) by the live instance with the highest
``sha256(id + "/" + VIN)`` (rendezvous hashing: all compute the same owner from the same live set, and removing an
instance moves only its own vehicles).

Life and death, from each instance's own view (``LiveSet``):

- an instance is *dead* when its topic says ``offline`` or no info of it arrived for ``takeover_s`` (a broker node
  that dies sends no will). Ages are counted on the receiver's monotonic clock, from when each info arrived: the
  machines' clocks may differ, and a retained info of last week counts as fresh when it arrives, so an instance
  that just started waits up to ``takeover_s`` before it takes over from one that died long ago;
- it is *certainly dead* (its vehicles may be acted on by another) when no info came for ``takeover_s``, or its
  ``offline`` arrived at least ``takeover_s / 2`` ago: the broker may send the will of a connection it lost while
  the process still runs; that process stops acting by itself within ``takeover_s / 2`` (the fence below).

Exactly once: a vehicle is never acted on by two instances, because an instance acts on a vehicle only while it
*holds* it, and it takes hold of a vehicle only when

1. it is the vehicle's owner over its own live set;
2. no other instance that is not certainly dead lists the vehicle in its info (a live previous owner first lets it
   go, see below; a dead one is ignored once its death is certain);
3. it has been announced for one heartbeat interval (``takeover_s / 4``) since its first heartbeat came back from
   the broker, so that every other instance has seen it (and ranks it) before it acts;
4. it is not fenced: its own last heartbeat came back from the broker less than ``takeover_s / 2`` ago. An
   instance cut off from the broker stops acting (no command accepted, none sent to the vendor, nothing
   published for the vehicle) long before the others may declare it dead (``takeover_s``), and once it is back
   after such a gap it lets every vehicle go and takes hold again by these rules.

An instance lists a vehicle in its info from the moment it takes hold of it (the info is published before it acts)
until it has let it go. It lets a vehicle go when another instance outranks it, but only once the vehicle's commands
have ended, no read of it is running and the new owner is past its rule 3; until then it still serves it (a command
that arrives meanwhile is executed by it, once), and the new owner waits (rule 2). Two instances can only both
believe they own a vehicle while their live sets differ: an instance that just appeared (rule 3 makes everyone see
it first), or one that is dying (the survivors rank the same way once its death is certain to them; until then the
dying one is the owner in the views that still hold it alive, and it is fenced or dead). The timing assumption
behind rules 3 and 4: a message reaches every instance within a small part of ``takeover_s / 4``, and the machines'
clocks run at the same rate. Two processes sharing one id would defeat all of this: each one that sees the other's
heartbeat stops acting.

A command for a vehicle nobody may act on yet (its owner has not taken hold, and no instance that may still act
lists it) is refused by the owner (``REJECTED`` on the event topic), never sent; one that arrives while a dead
owner's death is not yet certain is answered by nobody.

A command that the dead instance had received but not sent to the vendor cannot be told apart from one it sent
without an answer; both are ended ``FAILED`` and never sent again. So that the new owner knows of them, an instance
publishes a command's record (``INITIATED``, no ``event_id``) before it calls the vendor. Commands the dead instance
had sent are followed to their end from their retained ``<root>/<command>/execution`` records, which every
instance mirrors as they are published.
"""

from mqttbridge.cluster.instance import Cluster
from mqttbridge.cluster.rules import NOT_SENT, LiveSet, Peer, inherited, owner, rank

__all__ = ["NOT_SENT", "Cluster", "LiveSet", "Peer", "inherited", "owner", "rank"]
