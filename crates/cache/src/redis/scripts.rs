//! The Lua scripts of the compare-and-act operations. Redis runs a script atomically; every
//! key a script touches is passed in `KEYS`.

use redis::Script;

const INCREMENT: &str = r"
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return value
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// GCRA on the server's clock, so every instance agrees. Stores the theoretical arrival time
/// (microseconds) and returns {allowed, used_us, retry_us}; see `crate::limiter`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission * cost
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, new_tat - now, 0}
";

/// Appends to a log (see `crate::log`): starts a new epoch when the log is gone, takes the next
/// offset, trims the stream to `retain`, renews the TTL of all three keys and, when a channel is
/// given, publishes the entry there — one script, so the channel's order is the offsets' order.
/// KEYS: epoch, seq, stream. ARGV: new epoch, retain, ttl ms, data, channel ('' for none).
const LOG_APPEND: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('SET', KEYS[1], epoch)
end
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], '0-' .. offset, 'd', ARGV[4])
local ttl = tonumber(ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[5], epoch .. ' ' .. offset .. ' ' .. ARGV[4])
end
return {epoch, offset}
";

/// Reads a log after an offset: {epoch, last offset, oldest retained offset (0: none),
/// offset1, data1, offset2, data2, …}. A log that does not exist is started (empty, new epoch),
/// so every reader gets a position it can resume from later.
/// KEYS: epoch, seq, stream. ARGV: new epoch, ttl ms, since offset.
const LOG_READ: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('SET', KEYS[1], epoch, 'PX', ARGV[2])
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local oldest = 0
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
if #first > 0 then
  oldest = tonumber(string.sub(first[1][1], 3))
end
local out = {epoch, last, oldest}
local since = tonumber(ARGV[3])
if since < last then
  local entries = redis.call('XRANGE', KEYS[3], '0-' .. (since + 1), '+')
  for _, entry in ipairs(entries) do
    table.insert(out, string.sub(entry[1], 3))
    table.insert(out, entry[2][2])
  end
end
return out
";

/// Adds members to an expiring set (a sorted set scored by expiry on the server's clock) and
/// drops the expired ones. KEYS: set. ARGV: ttl ms, members….
const MEMBERS_ADD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
";

/// The live members of an expiring set. KEYS: set.
const MEMBERS_LIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
";

pub(super) struct Scripts {
    pub increment: Script,
    pub release: Script,
    pub extend: Script,
    pub gcra: Script,
    pub log_append: Script,
    pub log_read: Script,
    pub members_add: Script,
    pub members_live: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            increment: Script::new(INCREMENT),
            release: Script::new(RELEASE),
            extend: Script::new(EXTEND),
            gcra: Script::new(GCRA),
            log_append: Script::new(LOG_APPEND),
            log_read: Script::new(LOG_READ),
            members_add: Script::new(MEMBERS_ADD),
            members_live: Script::new(MEMBERS_LIVE),
        }
    }
}
