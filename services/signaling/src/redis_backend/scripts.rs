//! Lua scripts that make each presence change atomic in Redis. Each touches the
//! keys of one room only (its members hash, its chat list, its seats' numbers
//! and replay buffers), which share the room's hash tag, so every script runs on
//! a single Redis Cluster shard.
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

/// `KEYS[1]` members hash, `KEYS[2]` chat list, `KEYS[3]` seqs hash, `KEYS[4]` the
/// seat's replay buffer. ARGV: peer, conn. Reply: 1 when the seat was freed. The
/// seat takes its stream along; the room's last seat its chat history too.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw).conn ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1], ARGV[1] .. ':bytes')
redis.call('DEL', KEYS[4])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2], KEYS[3]) end
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

/// `KEYS[1]` members hash, `KEYS[2]` chat list, `KEYS[3]` seqs hash, `KEYS[4]` the
/// seat's replay buffer. ARGV: peer, conn. Reply: the parked reason when the seat
/// was freed, nil otherwise.
pub static EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local record = cjson.decode(raw)
if record.conn ~= ARGV[2] or type(record.parked) ~= 'table' then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1], ARGV[1] .. ':bytes')
redis.call('DEL', KEYS[4])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2], KEYS[3]) end
return record.parked.reason
",
    )
});

/// `KEYS[1]` members hash, `KEYS[2]` seqs hash. ARGV: peer, record JSON, the last
/// seq the node sent the seat. Writes the record back after an outage unless
/// another connection has taken the seat meanwhile, and raises the seat's
/// stream counter to that seq, so that after an empty restart the numbering
/// goes on where the client is instead of starting at 1 again. An attached seat
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
local seq = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[3]) > seq then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
if raw then return 1 end
return 2
",
    )
});

/// `KEYS[1]` members hash, `KEYS[2]` chat list, `KEYS[3]` seqs hash. ARGV: dead node
/// id, now ms, the room's replay buffer key prefix. Frees the dead node's seats
/// except parked ones still inside their resume window, with their streams; an
/// emptied room loses its chat history. The buffers' keys are made here from the
/// prefix: they carry the room's hash tag, so they live on this shard.
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
      redis.call('HDEL', KEYS[3], all[i], all[i] .. ':bytes')
      redis.call('DEL', ARGV[3] .. all[i])
      table.insert(reply, all[i])
      table.insert(reply, parked and record.parked.reason or 'node-lost')
    end
  end
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[2], KEYS[3]) end
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

/// `KEYS[1]` members hash, `KEYS[2]` seqs hash, `KEYS[3]` chat list. ARGV: whom the
/// event is for (`one`: peer ARGV[2], and nothing is published when it has no
/// seat, since no node would deliver it; `all`: every seat but
/// ARGV[2]; `none`), the envelope JSON, PUBLISH or SPUBLISH, channel, the replay
/// buffers' key prefix, most entries and bytes a buffer keeps, a buffer's
/// lifetime in ms, then a chat entry to keep ('' for none), most chat entries,
/// the chat list's lifetime in ms.
///
/// In one step: keeps the chat entry; gives the event the next number on each
/// recipient's stream and keeps `"<seq> <envelope>"` in that seat's buffer
/// (trimmed from the oldest to the bounds, the newest always kept); publishes
/// the envelope with `"seqs":{peer:seq,...}` appended as its last field. The
/// envelope is never decoded here: peer ids are hex, so the map is written
/// as text. Reply: the PUBLISH's receiver count, or -1 for a `one` whose peer
/// has no seat.
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local envelope = ARGV[3]
if ARGV[10] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[10])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[11]), -1)
  redis.call('PEXPIRE', KEYS[3], ARGV[12])
end
local targets = {}
if ARGV[1] == 'one' then
  if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return -1 end
  targets[1] = ARGV[2]
elseif ARGV[1] == 'all' then
  for _, peer in ipairs(redis.call('HKEYS', KEYS[1])) do
    if peer ~= ARGV[2] then targets[#targets + 1] = peer end
  end
end
if #targets == 0 then
  return redis.call(ARGV[4], ARGV[5], envelope)
end
local most, most_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local seqs = {}
for _, peer in ipairs(targets) do
  local seq = redis.call('HINCRBY', KEYS[2], peer, 1)
  local log = ARGV[6] .. peer
  local entry = seq .. ' ' .. envelope
  local len = redis.call('RPUSH', log, entry)
  local bytes
  if len == 1 then
    bytes = #entry
    redis.call('HSET', KEYS[2], peer .. ':bytes', bytes)
  else
    bytes = redis.call('HINCRBY', KEYS[2], peer .. ':bytes', #entry)
  end
  while len > 1 and (len > most or bytes > most_bytes) do
    local old = redis.call('LPOP', log)
    bytes = redis.call('HINCRBY', KEYS[2], peer .. ':bytes', -#old)
    len = len - 1
  end
  redis.call('PEXPIRE', log, ARGV[9])
  seqs[#seqs + 1] = '"' .. peer .. '":' .. seq
end
local numbered = string.sub(envelope, 1, -2) .. ',"seqs":{' .. table.concat(seqs, ',') .. '}}'
return redis.call(ARGV[4], ARGV[5], numbered)
"#,
    )
});

/// `KEYS[1]` seqs hash, `KEYS[2]` the seat's replay buffer. ARGV: peer.
/// Reply: {the stream's last seq, entries oldest first...}, read in one step.
pub static READ_LOG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local reply = redis.call('LRANGE', KEYS[2], 0, -1)
table.insert(reply, 1, redis.call('HGET', KEYS[1], ARGV[1]) or '0')
return reply
",
    )
});

/// `KEYS[1]` seqs hash, `KEYS[2]` the seat's replay buffer. ARGV: peer, seq.
/// Drops the entries numbered seq or lower (acknowledged). Reply: how many.
pub static TRIM_LOG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local upto = tonumber(ARGV[2])
local dropped = 0
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head then break end
  local seq = tonumber(string.match(head, '^(%d+) '))
  if not seq or seq > upto then break end
  redis.call('LPOP', KEYS[2])
  redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':bytes', -#head)
  dropped = dropped + 1
end
return dropped
",
    )
});
