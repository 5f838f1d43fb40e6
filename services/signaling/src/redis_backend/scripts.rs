//! Lua scripts that make each presence change atomic in Redis. Each touches the
//! keys of one room only (its members hash, its chat list), which share the
//! room's hash tag, so every script runs on a single Redis Cluster shard.
//! Replies are flat arrays of strings: a status first, then data.

use std::sync::LazyLock;

use redis::Script;

/// `KEYS[1]` members hash. ARGV: peer, record JSON, capacity.
/// Reply: {"full"} or {"ok", other records...}.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {'full'}
end
local reply = {'ok'}
for _, record in ipairs(redis.call('HVALS', KEYS[1])) do
  table.insert(reply, record)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return reply
",
    )
});

/// `KEYS[1]` members hash, `KEYS[2]` chat list. ARGV: peer, conn. Reply: 1 when the
/// seat was freed. The room's last seat takes its chat history along.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw).conn ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
return 1
",
    )
});

/// `KEYS[1]` members hash. ARGV: peer, conn, parked JSON. Reply: 1 when parked.
pub static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
if record.conn ~= ARGV[2] then return 0 end
record.parked = cjson.decode(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
return 1
",
    )
});

/// `KEYS[1]` members hash. ARGV: peer, secret, node, conn, now ms, the conn that
/// held the seat when the resume read it (the seat moves only from that one, so
/// that of two resumes racing from the same read exactly one wins).
/// Reply: {"no"} or {"ok", the seat, every record of the room...}.
pub static RESUME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return {'no'} end
local record = cjson.decode(raw)
if record.resume_secret ~= ARGV[2] then return {'no'} end
if record.conn ~= ARGV[6] then return {'no'} end
if type(record.parked) == 'table' and tonumber(record.parked.until_ms) <= tonumber(ARGV[5]) then
  return {'no'}
end
if record.grant_expires_ms and tonumber(record.grant_expires_ms) <= tonumber(ARGV[5]) then
  return {'no'}
end
record.node = ARGV[3]
record.conn = ARGV[4]
record.parked = nil
local seat = cjson.encode(record)
redis.call('HSET', KEYS[1], ARGV[1], seat)
local reply = {'ok', seat}
for _, other in ipairs(redis.call('HVALS', KEYS[1])) do
  table.insert(reply, other)
end
return reply
",
    )
});

/// `KEYS[1]` members hash, `KEYS[2]` chat list. ARGV: peer, conn. Reply: the parked
/// reason when the seat was freed, nil otherwise.
pub static EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local record = cjson.decode(raw)
if record.conn ~= ARGV[2] or type(record.parked) ~= 'table' then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
return record.parked.reason
",
    )
});

/// `KEYS[1]` members hash. ARGV: peer, record JSON. Writes the record back after an
/// outage unless another connection has taken the seat meanwhile. An attached seat
/// wins over a parked one of another connection whichever is written back first:
/// the node that parked a seat resumed elsewhere keeps its parked copy until the
/// window passes, and after an empty restart that copy must not take the seat from
/// the node the person is on.
/// Reply: 0 untouched, 1 rewritten, 2 re-created (it was gone: swept by another
/// node during a partition, or lost by a Redis restart).
pub static REASSERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local held = cjson.decode(raw)
  local mine = cjson.decode(ARGV[2])
  if held.conn ~= mine.conn and (type(held.parked) ~= 'table' or type(mine.parked) == 'table') then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if raw then return 1 end
return 2
",
    )
});

/// `KEYS[1]` members hash, `KEYS[2]` chat list. ARGV: dead node id, now ms. Frees the
/// dead node's seats except parked ones still inside their resume window; an
/// emptied room loses its chat history.
/// Reply: {seats still waiting, peer, reason, peer, reason...}.
pub static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local waiting = 0
local reply = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local record = cjson.decode(all[i + 1])
  if record.node == ARGV[1] then
    local parked = type(record.parked) == 'table'
    if parked and tonumber(record.parked.until_ms) > tonumber(ARGV[2]) then
      waiting = waiting + 1
    else
      redis.call('HDEL', KEYS[1], all[i])
      table.insert(reply, all[i])
      table.insert(reply, parked and record.parked.reason or 'node-lost')
    end
  end
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2]) end
table.insert(reply, 1, tostring(waiting))
return reply
",
    )
});

/// `KEYS[1]` members hash. ARGV: peer, conn, the change as JSON (the call state
/// fields it sets, each `true` or `false`; absent ones keep their value). A
/// field is stored only while true, as the record's serde writes it.
/// Reply: the changed record, nil when `conn` does not hold the seat.
pub static SET_CALL_STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local record = cjson.decode(raw)
if record.conn ~= ARGV[2] then return false end
local change = cjson.decode(ARGV[3])
for _, field in ipairs({'hand', 'muted', 'cameraOff', 'sharing'}) do
  if change[field] == true then
    record[field] = true
  elseif change[field] == false then
    record[field] = nil
  end
end
local seat = cjson.encode(record)
redis.call('HSET', KEYS[1], ARGV[1], seat)
return seat
",
    )
});

/// `KEYS[1]` chat list. ARGV: entry JSON, most entries kept, lifetime in ms,
/// PUBLISH or SPUBLISH, channel, envelope JSON. Keeps the entry and publishes the
/// envelope in one step; the list lives `lifetime` past its last message. The
/// channel carries the room's hash tag, so SPUBLISH stays on the list's shard.
/// Reply: the PUBLISH's receiver count.
pub static KEEP_AND_PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call(ARGV[4], ARGV[5], ARGV[6])
",
    )
});
