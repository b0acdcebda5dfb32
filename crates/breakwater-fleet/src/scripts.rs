//! The two Lua scripts the fleet runs in Redis, each one round trip and atomic there.
//!
//! Keys, for a breaker `B` under the prefix `P` (one Redis server; not Redis Cluster):
//! `P:B:i:INSTANCE` (an instance's snapshot, with a TTL), `P:B:members` (the instances seen
//! lately, a set), `P:B:probe` (the fleet's prober, with a TTL).

use std::sync::LazyLock;

use redis::Script;

/// Publishes this instance's snapshot with its TTL and reads every other live instance's:
/// `[instance, value, milliseconds left to live, ...]`. An instance whose snapshot has
/// expired is dropped from the set; a key of the wrong type (not ours, or hostile) or a value
/// longer than a snapshot is reported as a value that no snapshot parser accepts (unread),
/// never an error that would hide the others.
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local own, members = KEYS[1], KEYS[2]
local snapshot, ttl, me, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local longest = tonumber(ARGV[5])
redis.call('SET', own, snapshot, 'PX', ttl)
local added = redis.pcall('SADD', members, me)
if type(added) == 'table' and added.err then
  redis.call('DEL', members)
  redis.call('SADD', members, me)
end
redis.call('PEXPIRE', members, ttl * 10)
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', members)) do
  if m ~= me then
    local key = prefix .. m
    local length = redis.pcall('STRLEN', key)
    local value
    if type(length) == 'table' then
      value = '(a ' .. redis.call('TYPE', key).ok .. ', not a string)'
    elseif length > longest then
      value = '(' .. length .. ' bytes: longer than any snapshot)'
    else
      value = redis.call('GET', key)
    end
    if value then
      out[#out + 1] = m
      out[#out + 1] = value
      out[#out + 1] = redis.call('PTTL', key)
    else
      redis.call('SREM', members, m)
    end
  end
end
return out
",
    )
});

/// The fleet's prober, `SET NX PX`: `ARGV[1]` is what to do.
///
/// - `take`: become the prober if nobody is (`taken`); otherwise the holder's value and its
///   milliseconds left to live (`-1`: none; a value of the wrong type, or longer than
///   `ARGV[7]` bytes (a snapshot's longest), reads as `?`).
/// - `renew`: extend our lease, or take it again if it is gone (Redis restarted): `renewed`;
///   `lost` if another instance holds it. `succeeded` likewise writes its mark where the
///   lease is gone.
/// - `succeeded`: our probes succeeded: replace our lease with the closed mark
///   `ARGV[4] MICROS` (Redis's time, one clock for the whole fleet), which lives `ARGV[5]` ms
///   (or until an instance opens again on its own evidence), for held instances to read when
///   their waits end (`marked`, or `lost`).
/// - `failed`: our probes failed (or we stop): give the lease back (`released`).
/// - `time`: Redis's time, in microseconds (`time`, MICROS), to stamp an opening the fleet
///   made here.
/// - `stale`: the closed mark `ARGV[6]`, older than this instance's opening, is deleted if
///   it is still there (`cleared`), so a prober can be taken.
/// - `opened`: this instance opened on its own evidence: a closed mark is out of date and is
///   deleted; answers Redis's time, in microseconds (`cleared`, MICROS): only a mark written
///   after it may close this instance.
pub(crate) static PROBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key, action, owner, lease = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local time = redis.call('TIME')
local micros = tonumber(time[1]) * 1000000 + tonumber(time[2])
-- As text, digit by digit (a Lua number of this size would print in scientific notation).
local stamp = time[1] .. string.format('%06d', tonumber(time[2]))
if action == 'opened' then
  local value = redis.pcall('GET', key)
  if type(value) == 'string' and string.sub(value, 1, 7) == 'closed ' then
    redis.call('DEL', key)
  end
  return {'cleared', micros}
end
if action == 'time' then
  return {'time', micros}
end
if action == 'stale' then
  if redis.pcall('GET', key) == ARGV[6] then redis.call('DEL', key) end
  return {'cleared', micros}
end
if action == 'take' then
  if redis.call('SET', key, owner, 'NX', 'PX', lease) then
    return {'taken', 0}
  end
  local length = redis.pcall('STRLEN', key)
  local value = '?'
  if type(length) == 'number' and length <= tonumber(ARGV[7]) then value = redis.call('GET', key) end
  return {value, redis.call('PTTL', key)}
end
if action == 'renew' and redis.call('SET', key, owner, 'NX', 'PX', lease) then
  return {'renewed', 0}
end
if action == 'succeeded' and redis.call('SET', key, ARGV[4] .. ' ' .. stamp, 'NX', 'PX', ARGV[5]) then
  return {'marked', 0}
end
local current = redis.pcall('GET', key)
if current ~= owner then
  if action == 'failed' then return {'released', 0} end
  return {'lost', 0}
end
if action == 'renew' then
  redis.call('PEXPIRE', key, lease)
  return {'renewed', 0}
elseif action == 'succeeded' then
  redis.call('SET', key, ARGV[4] .. ' ' .. stamp, 'PX', ARGV[5])
  return {'marked', 0}
end
redis.call('DEL', key)
return {'released', 0}
",
    )
});
