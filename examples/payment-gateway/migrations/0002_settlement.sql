-- Who settled each payment, and the reconciler's claims. Portable, as 0001.
--
-- settled_by: 'confirm' (the confirm flow recorded the PG's answer), 'compensation' (the flow
-- could not record a charge and cancelled it at the PG), 'reconciler' (settled later by asking
-- the PG).
ALTER TABLE payments ADD COLUMN settled_by TEXT;

-- A reconciler claims a payment before asking the PG about it, until claimed_until (Unix ms):
-- two reconcilers never settle one payment, and a claim left by one that stopped runs out.
ALTER TABLE payments ADD COLUMN claimed_by TEXT;
ALTER TABLE payments ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
