-- The Lua side of shardkv's scripting engine (see shardkv/worker/scripting.py).
--
-- Runs once in a fresh Lua 5.1 state, with the Python callables it needs
-- passed as arguments.  It builds Redis 7.0's script environment: the
-- ``redis`` table, Redis's error handler, the loaded libraries, and the
-- sandbox: no os, io, package, require, loadfile, dofile, print or python;
-- no bytecode loading; every table reachable from the globals read-only
-- ("Attempt to modify a readonly table"), and reading a global that does
-- not exist an error, as Redis 7's global protection.
local pycall, pyraise, pysha1, pylog, pysetresp, pysetrepl, pyrandom, pyrandomseed, pycheck, libs, pyregister, pyclock, pypacked, pywiden, pynarrowpatch, pywidepatch, pyindexed = ...
-- The bytecode patches a compile may ask for, by number (engine.compile):
-- given once, as every Python function here, never passed per script.
local PATCHES = {pynarrowpatch, pywidepatch}

local rawget, rawset, setmetatable, getmetatable, type, error, tostring, pairs, next =
    rawget, rawset, setmetatable, getmetatable, type, error, tostring, pairs, next
local select, unpack, loadstring, load, xpcall, pcall, setfenv, tonumber =
    select, unpack, loadstring, load, xpcall, pcall, setfenv, tonumber
local dbg = debug
local coresume_c = coroutine.resume  -- (the handler knows its errors)
local string_dump = string.dump
local collectgarbage = collectgarbage
local clock = pyclock  -- monotonic seconds, for FUNCTION LOAD's timeout

local G = _G
for _, name in ipairs({"os", "io", "package", "require", "module", "loadfile", "dofile", "print", "python", "debug", "newproxy", "getfenv", "setfenv"}) do
    G[name] = nil
end
G.ipairs = ipairs

-- Binary chunks are refused, as Redis's Lua refuses them (a known escape).
local function check_chunk(s)
    if type(s) == "string" and s:sub(1, 1) == "\27" then
        return nil, "binary chunks are not allowed"
    end
    return s
end
G.loadstring = function(...)
    local s, name = ...
    local t = type(s)
    if t ~= "string" and t ~= "number" then  -- (luaL_checklstring's error)
        local i = dbg.getinfo(1, "n")
        local got = select("#", ...) == 0 and "no value" or t
        error("bad argument #1 to '" .. (i and i.name or "?") .. "' (string expected, got " .. got .. ")", 2)
    end
    local ok, msg = check_chunk(s)
    if not ok then return nil, msg end
    local f, err = loadstring(s, name)
    -- (a chunk's globals would be the thread's: see the end of this file)
    if f then setfenv(f, G) end
    return f, err
end
-- string.dump refuses what Redis's refuses: its C functions, which the
-- prelude's Lua wrappers (redis.call, tostring, cjson.encode...) stand in for.
string.dump = function(...)
    local f = ...
    local t = type(f)
    if t == "userdata" and not rawequal(f, rawget(libs.modules.cjson, "null")) then
        error("unable to dump given function", 2)  -- (a Python callable: to scripts, a C function)
    elseif t ~= "function" then  -- (luaL_checktype's error)
        local i = dbg.getinfo(1, "n")
        local got = select("#", ...) == 0 and "no value" or t
        error("bad argument #1 to '" .. (i and i.name or "?") .. "' (function expected, got " .. got .. ")", 2)
    end
    local i = dbg.getinfo(f, "S")
    if i.what == "C" or i.source == "=prelude" then error("unable to dump given function", 2) end
    return (string_dump(f))
end
G.load = function(f, name)
    local parts = {}
    while true do
        local piece = f()
        if piece == nil or piece == "" then break end
        if type(piece) ~= "string" then return nil, "reader function must return a string" end
        parts[#parts + 1] = piece
    end
    return G.loadstring(table.concat(parts), name)
end

-- redis.* -----------------------------------------------------------------
local redis = {}

-- The error table redis.call raised (Engine._hold stores it at [1]), until
-- the handler, pcall or a resume takes it.  Taken here, in Lua: lupa reads
-- a table from Python on the wrong Lua stack while a coroutine runs (the
-- read gave the resumed thread, not the error), where its stores are sound.
local held = {}
local function pytake()
    local t = held[1]
    held[1] = nil
    return t
end

local function raise(err)
    -- An error table, raised so that the handler finds the caller's line.
    error(err, 0)
end

-- redis.call is the Python callable itself, so that ``return
-- redis.call(...)`` keeps the script's frame (a C call is no tail call) and
-- an error names the script's line.  It raises a Python exception; the
-- error table it stands for is taken back with pytake().
redis.call = pyraise
local function narrow_pcall(...)
    return (pycall(false, ...))
end
redis.pcall = narrow_pcall

-- lupa checks its Lua stack before it calls Python, and Lua 5.1 caps a C
-- function's stack at 8000 slots (LUAI_MAXCSTACK): a call of more than
-- 7997 arguments never reaches Python.  Redis's redis.call takes any
-- number.  A script that can make such a call (its text names unpack,
-- byte or ``...``: see scripting.py's ``may_call_wide``) runs from the start
-- with these wide forms, which hand a long call to Python as one table;
-- every other script keeps the C-level callables, at no cost per call.  A
-- wide redis.call is a Lua function, so ``return redis.call(...)`` would be
-- a tail call that drops the script's frame (its error would name no line):
-- such a script is compiled with its tail calls made plain calls
-- (luabytecode.py).  A script that reaches unpack under another name and
-- is refused (see the handler) is undone and runs again, wide.
local WIDE = 7900
local wide = false
-- lupa hands Python -0 as the integer 0; Redis writes a number argument
-- with %.17g, so -0 goes as "-0".  The wide forms hand a -0 over as that
-- text.  A narrow run whose redis.call, redis.pcall or redis.sha1hex gets
-- a 0 (Python cannot tell its sign) is undone and runs again wide
-- (scripting.py's ``Engine._sign_unknown``): a script that passes no 0
-- pays nothing for it.
local function negative_zero(x)
    return x == 0 and 1 / x < 0
end
local function signed_table(t, n)
    for i = 1, n do
        if negative_zero(t[i]) then t[i] = "-0" end
    end
    return t
end
local function has_negative_zero(n, ...)
    -- (the usual call, of four arguments or fewer, makes no table and no
    -- call per argument: this runs on each call of a wide run)
    local a, b, c, d = ...
    if a == 0 and 1 / a < 0 or b == 0 and 1 / b < 0 or c == 0 and 1 / c < 0 or d == 0 and 1 / d < 0 then
        return true
    end
    if n <= 4 then return false end
    local t = {...}
    for i = 5, n do
        if negative_zero(t[i]) then return true end
    end
    return false
end
local function wide_call(...)
    local n = select("#", ...)
    if n < WIDE then
        if not has_negative_zero(n, ...) then return pyraise(...) end
        return pyraise(unpack(signed_table({...}, n), 1, n))
    end
    return pypacked(true, signed_table({...}, n), n)
end
local function wide_pcall(...)
    local n = select("#", ...)
    if n < WIDE then
        if not has_negative_zero(n, ...) then return (pycall(false, ...)) end
        return (pycall(false, unpack(signed_table({...}, n), 1, n)))
    end
    return (pypacked(false, signed_table({...}, n), n))
end
local function wide_sha1hex(...)
    local n = select("#", ...)
    if not has_negative_zero(n, ...) then return pysha1(...) end
    return pysha1(unpack(signed_table({...}, n), 1, n))
end
-- A script that reaches unpack or string.byte only under another name
-- (``_G['unp'..'ack']``) runs narrow.  Those two are wrapped: when one
-- gives WIDE or more values, the call they are for is still to come (a
-- call's function is evaluated before its arguments), so the narrow
-- redis.call or redis.pcall waiting for them in the calling script's frame
-- (a register, or a local) is swapped for its wide form there and then,
-- and the long call goes through: nothing is run twice.
local function widen_pending(level)
    local i = dbg.getinfo(level, "S")
    while i and (i.what ~= "Lua" and i.what ~= "main" or i.source == "=prelude") do
        level = level + 1  -- (C functions, the prelude's, lost tail calls)
        i = dbg.getinfo(level, "S")
    end
    if not i then return end
    local n = 1
    while true do
        local name, value = dbg.getlocal(level, n)
        if name == nil then return end
        if rawequal(value, pyraise) then
            dbg.setlocal(level, n, wide_call)
        elseif rawequal(value, narrow_pcall) then
            dbg.setlocal(level, n, wide_pcall)
        end
        n = n + 1
    end
end
local function long_results(...)
    -- (called in tail position: level 3 is the wrapper's caller)
    if not wide and select("#", ...) >= WIDE then widen_pending(3) end
    return ...
end
-- The userdata that are values to a script: the Python callables it can
-- reach (to it, C functions) and cjson.null.  An error whose value is one
-- of them (``error(redis.call)``) is that value, not a Python exception.
-- What tostring shows of them: a C function's "function: 0x...", an
-- address of its own (a Lua function's, kept alive so that no other
-- function gets it).
local plain_userdata, stand_ins = {[rawget(libs.modules.cjson, "null")] = "userdata: (nil)"}, {}
for i, f in ipairs({pyraise, pycall, pysha1, pylog, pysetresp, pysetrepl, pyrandom, pyrandomseed, pypacked, pyregister}) do
    stand_ins[i] = function() end
    plain_userdata[f] = tostring(stand_ins[i])
end
local function argerror_named(msg, i)
    -- A Python callable's "bad argument #n to 'name' ..." as luaL_argerror
    -- words it, given the C function's frame (i): its name as called.
    local n, rest = string.match(msg, "^bad argument #(%d+) to '[^']*' (.*)$")
    if not n then return msg end
    n = tonumber(n)
    if i.namewhat == "method" then
        n = n - 1
        if n == 0 then return "calling '" .. tostring(i.name) .. "' on bad self " .. rest end
    end
    return "bad argument #" .. n .. " to '" .. (i.name or "?") .. "' " .. rest
end
local function unwrap(e)
    -- A Python exception (from redis.call or a library) reaches Lua as a
    -- userdata: the error table redis.call stands for, or the message.
    if type(e) == "userdata" and not plain_userdata[e] then
        local t = pytake()
        if t ~= nil then return t end
        return tostring(e)
    end
    return e
end

-- The functions that give that many values are wrapped so: unpack,
-- string.byte, the libraries' unpack (cmsgpack's, struct's: Python
-- callables), and what passes between coroutines (coroutine.resume, the
-- function coroutine.wrap makes, and coroutine.yield).  A script that names unpack or byte runs
-- wide, with the real functions (see widen, below), so only those that
-- reach them otherwise see the wrappers.  A wrapper calls the real
-- function under pcall, where its error names no position and '?' for
-- the function; it raises it again as the script's own call would have
-- given it: at its caller's line, with the name that called the wrapper
-- (luaL_argerror's), '?' when that is no name (pcall called it, or a tail
-- call, which also loses the line).
local wrapped = {}  -- {table, key, real function, wrapper}: what widen (below) swaps

-- Hooks in coroutines.  Lua 5.1's debug.sethook keeps the hook's Lua
-- function per thread (in the registry, by the thread's address): a new
-- thread copies its creator's C hook and mask but not that entry, so the
-- count hook (below) never ran in a coroutine, and an endless loop in one
-- was neither reported busy nor killable.  Each resume (the wrappers of
-- coroutine.resume and of what coroutine.wrap gives) hands the coroutine
-- its resumer's hook (arm), and takes it back when the resume returns
-- (disarm), so that the registry keeps no entry for a thread collected
-- later.  As in Redis, a kill's hook is the thread's own (the others
-- raise at their next count); engine.stop's goes to every thread at once.
local hooked = {}  -- the coroutines being resumed, innermost last
local costatus, gethook, sethook = coroutine.status, dbg.gethook, dbg.sethook
local function arm(co)
    if type(co) ~= "thread" or costatus(co) ~= "suspended" then return nil end
    hooked[#hooked + 1] = co
    sethook(co, gethook())
    return co
end
local function disarm(co, ...)
    if co then
        hooked[#hooked] = nil
        sethook(co)
    end
    return ...
end
local function hook_all(f, mask, count)
    -- f in this thread and in every coroutine being resumed
    sethook(f, mask, count)
    for i = 1, #hooked do sethook(hooked[i], f, mask, count) end
end
local function rearm(f, count)
    -- the hook of every script's run (or a library's load): f every count instructions
    for i = #hooked, 1, -1 do
        sethook(hooked[i])
        hooked[i] = nil
    end
    sethook(f, "", count)
end

local as_c_function  -- (below) a Lua function whose errors are a C function's
local readonly = setmetatable({}, {__mode = "k"}) -- proxy -> real table (see Global protection)
-- (below) the hidden table of the globals, with this run's ARGV in it: what
-- a raw read of _G reads (readonly[G] is that table too)
local open_globals
do
    local real_pcall, match, byte, sub, error = pcall, string.match, string.byte, string.sub, error
    local function rethrow(ok, ...)
        if ok then return ... end
        -- level 2: the wrapper; 3: what called it
        local msg = ...
        if type(msg) ~= "string" then error(msg, 0) end
        local n, rest = match(msg, "^bad argument #(%d+) to '%?' (.*)$")
        if n then
            local w = dbg.getinfo(2, "n")
            local name = w and w.name or "?"
            n = tonumber(n)
            local method = w and w.namewhat == "method"
            if method then n = n - 1 end
            if n == 0 and method then
                msg = "calling '" .. name .. "' on bad self " .. rest
            else
                msg = "bad argument #" .. n .. " to '" .. name .. "' " .. rest
            end
        end
        if byte(msg, 1) == 0 then  -- (lualibs.BARE: a Lua runtime error in C, no position)
            error(sub(msg, 2), 0)
        end
        local c = dbg.getinfo(3, "Sl")
        if c and c.what ~= "C" and c.what ~= "tail" and c.currentline > 0 then
            msg = c.short_src .. ":" .. c.currentline .. ": " .. msg
        end
        error(msg, 0)
    end
    local function wrap(f)
        return function(...) return long_results(rethrow(real_pcall(f, ...))) end
    end
    local gsub = string.gsub
    local function library_error(ok, ...)
        if ok or type((...)) ~= "userdata" then return ok, ... end
        -- A Python exception: its text, where a Python library function
        -- names itself, as luaL_argerror does for a function pcall called
        -- ('?'): rethrow names it as its caller did.
        return false, (gsub(tostring((...)), "^(bad argument #%d+ to )'[^']*'", "%1'?'", 1))
    end
    local function wrap_library(f)
        return function(...) return long_results(rethrow(library_error(real_pcall(f, ...)))) end
    end
    local function keep(...) return ... end
    local function wrap_named(f)
        -- (keep: rethrow's call is no tail call, so its level 2 is this function)
        return function(...) return keep(rethrow(library_error(real_pcall(f, ...)))) end
    end
    -- lupa hands Python -0 as the integer 0, so the wrappers of the two
    -- functions that show a number's sign there answer it themselves:
    -- cjson.encode(-0) is -0 (its tables' -0s: lualibs.CJson asks Lua),
    -- and struct.pack takes -0 as the text "-0", which its luaL_check*
    -- read as -0 (for 'd', 'f', 's' and 'c').
    local function wrap_encode(f)
        return function(...)
            local x = ...
            if x == 0 and 1 / x < 0 and select("#", ...) == 1 then return "-0" end
            return keep(rethrow(library_error(real_pcall(f, ...))))
        end
    end
    local real_unpack = unpack
    local function positive_zeros(n, ...)
        local args = {...}
        for i = 1, n do
            local x = args[i]
            if x == 0 and 1 / x < 0 then args[i] = "-0" end
        end
        return real_unpack(args, 1, n)
    end
    local function wrap_pack(f)
        return function(...)
            local n = select("#", ...)
            for i = 1, n do
                local x = select(i, ...)
                if x == 0 and 1 / x < 0 then
                    return keep(rethrow(library_error(real_pcall(f, positive_zeros(n, ...)))))
                end
            end
            return keep(rethrow(library_error(real_pcall(f, ...))))
        end
    end
    local function wrap_function(lib, k, f)
        if k == "encode" then return wrap_encode(f) end
        if lib == libs.modules.struct and k == "pack" then return wrap_pack(f) end
        return wrap_named(f)
    end
    -- Redis's coroutine.create and coroutine.wrap take only a Lua function
    -- (luaB_cocreate's check), and every function of its sandbox but a
    -- script's own is a C function: here the prelude's stand-ins for them
    -- (table.insert, pcall, tostring, the libraries' wrappers, what
    -- coroutine.wrap gives...) are Lua functions, refused as Redis's are.
    local cowrap, cocreate, coresume, getinfo = coroutine.wrap, coroutine.create, coroutine.resume, dbg.getinfo
    local LUA_FUNCTION_EXPECTED = "bad argument #1 to '?' (Lua function expected)"
    local function lua_function(f)
        if type(f) ~= "function" then return false end
        local i = getinfo(f, "S")
        return i.what ~= "C" and i.source ~= "=prelude"
    end
    -- coroutine.resume's wrapper calls the C function straight, one C
    -- level per resume as in Redis (Lua 5.1's LUAI_MAXCCALLS, 200, counts
    -- its lua_resume; a pcall around it counted once more: coroutines
    -- nested 99 deep, not 199), under pcall only for what it raises, a
    -- first argument that is no thread (for a thread its coroutine's error
    -- is its answer; "too many results to resume", the one it raises then,
    -- gets its line from the handler).
    -- What coroutine.wrap gives resumes its coroutine with luaB_cowrap's
    -- C function (its limits on values, its errors), under pcall (its
    -- error, the coroutine's, must be given at its caller's line: a level
    -- more per resume, so these nest 99 deep where Redis's nest 198).  Lua
    -- cannot reach that function's thread: the coroutine runs a prelude
    -- function first, which takes its thread and, on that first resume,
    -- the resumer's hook (see arm), then the script's function.
    local running = coroutine.running
    -- The error ``e`` that ended the coroutine ``co``, a Python exception
    -- (a userdata): redis.call's stands for Redis's error table; a
    -- library's (math.random's, a Python callable's) names the line that
    -- called it, as luaL_error does: the dead coroutine keeps its stack,
    -- level 0 the callable (as the handler finds it, below).
    local function coroutine_error(co, e)
        e = unwrap(e)
        if type(e) ~= "string" or co == nil then return e end
        local raiser = getinfo(co, 0, "nSl")
        local level, i = 0, raiser
        while i and (i.what == "C" or i.source == "=prelude") do
            level = level + 1
            i = getinfo(co, level, "nSl")
        end
        if i and level == 1 then e = i.short_src .. ":" .. tostring(i.currentline) .. ": " .. argerror_named(e, raiser) end
        return e
    end
    local function wrap_ended(state, ok, ...)
        -- (what coroutine.wrap's coroutine raised: see coroutine_error)
        if ok or type((...)) ~= "userdata" or plain_userdata[(...)] then return ok, ... end
        return ok, coroutine_error(state.co, (...))
    end
    -- Only the call that armed the coroutine disarms it: a call while it
    -- runs or resumes another ("cannot resume running coroutine", its own
    -- function called in it) arms nothing, and must leave the hook of the
    -- one still running, and its entry in hooked, to the call that did.
    local function first_resumed(state, ...)
        return disarm(state.co, ...)  -- (state.co: set if the first call ran it)
    end
    local function hooked_wrap(f)
        local state = {}
        local w = cowrap(function(...)
            local co, first = running(), state.first
            hooked[#hooked + 1] = co
            state.co, state.first = co, nil
            sethook(first[1], first[2], first[3])
            return f(...)
        end)
        return function(...)
            local co = state.co
            if co == nil then
                state.first = {gethook()}
                return first_resumed(state, wrap_ended(state, real_pcall(w, ...)))
            end
            if costatus(co) ~= "suspended" then return wrap_ended(state, real_pcall(w, ...)) end
            hooked[#hooked + 1] = co
            sethook(co, gethook())
            return disarm(co, wrap_ended(state, real_pcall(w, ...)))
        end
    end
    local function checked_cowrap(...)
        if not lua_function((...)) then keep(rethrow(false, LUA_FUNCTION_EXPECTED)) end
        local resume = hooked_wrap((...))
        return function(...) return keep(rethrow(resume(...))) end
    end
    local function wrapped_cowrap(...)
        if not lua_function((...)) then keep(rethrow(false, LUA_FUNCTION_EXPECTED)) end
        local resume = hooked_wrap((...))
        return function(...) return long_results(rethrow(resume(...))) end
    end
    rawset(coroutine, "create", function(...)
        if not lua_function((...)) then keep(rethrow(false, LUA_FUNCTION_EXPECTED)) end
        return cocreate(...)
    end)
    -- A coroutine ended by a Python exception (redis.call's error) gives
    -- what it stands for, as pcall does: Redis's error table.  A library's
    -- (math.random's, a Python callable's) names the line that called it,
    -- as luaL_error does: the dead coroutine keeps its stack, level 0 the
    -- callable (as the handler finds it, below).
    local function resumed(co, ok, ...)
        if ok or type((...)) ~= "userdata" then return ok, ... end
        return ok, coroutine_error(co, (...))
    end
    local function add(t, k, w)
        local f = rawget(t, k)
        wrapped[#wrapped + 1] = {t, k, f, w(f)}
    end
    -- Redis's libraries are C functions: their errors are at their
    -- caller's line (luaL_error's luaL_where), and an argument error names
    -- the function as its caller called it (luaL_argerror).  shardkv's are
    -- Python callables, each called through a Lua function that gives
    -- their errors so (rethrow); so that a tail call of one keeps the
    -- caller's frame, scripts are compiled with such tail calls made plain
    -- calls (luabytecode.py).
    -- (The two unpacks: widen swaps in the named one, or this
    -- narrow wrapper, which also widens.)
    for _, lib in ipairs({libs.modules.cmsgpack, libs.modules.struct}) do
        local f = rawget(lib, "unpack")
        wrapped[#wrapped + 1] = {lib, "unpack", wrap_named(f), wrap_library(f)}
    end
    -- cjson.new: a fresh cjson table, its functions wrapped likewise (and
    -- writable, as lua_cjson_new's own table is).
    -- (cjson.null is the one userdata no Python callable)
    -- Its functions are Lua closures over the id of the table's
    -- configuration, which call the callables every such table shares:
    -- no new userdata (a Python object pushed into Lua, whose __gc a
    -- collector step runs later, 200 C calls deep too: lualibs.Raised).
    -- The id of a table collected is reused (found by a look at two ids
    -- a call), its configuration made afresh.
    local parts, json_null = rawget(libs.modules.cjson, "new"), rawget(libs.modules.cjson, "null")
    local configure, shared, names = parts.configure, parts.functions, parts.names
    local live, ids, next_look = setmetatable({}, {__mode = "v"}), 0, 1
    local function free_id()
        for _ = 1, 2 do
            if next_look > ids then next_look = 1 end
            if next_look > ids then break end
            local id = next_look
            next_look = next_look + 1
            if live[id] == nil then return id end
        end
        ids = ids + 1
        return ids
    end
    local function cjson_new()
        local id, lib = free_id(), {}
        configure(id)
        for i = 1, #names do
            local k, f = names[i], shared[names[i]]
            rawset(lib, k, wrap_function(lib, k, function(...) return f(id, ...) end))
        end
        rawset(lib, "null", json_null)
        rawset(lib, "_NAME", "cjson")
        rawset(lib, "_VERSION", "2.1.0")
        rawset(lib, "new", cjson_new)
        live[id] = lib
        return lib
    end
    rawset(libs.modules.cjson, "new", cjson_new)
    for _, lib in pairs(libs.modules) do
        for k, f in pairs(lib) do
            if type(f) == "userdata" and f ~= json_null then rawset(lib, k, wrap_function(lib, k, f)) end
        end
    end
    -- Lua 5.1's luaB_unpack counts its results in an int, e - i + 1,
    -- which overflows for a range of 2^31 values or more (unpack(t, -2^31,
    -- 2^31 - 1)): its check passes, it pushes past the stack and the
    -- process dies (CVE-2025-46817).  Redis's patched unpack refuses such
    -- a range with its usual error; so does this, before the C function
    -- sees it.  (Both wrappers call it: no script reaches the C function.)
    local floor, ceil, real_unpack = math.floor, math.ceil, unpack
    local function c_int(x)
        -- luaL_checkint's value of a number or numeric string (x86-64:
        -- (int)(ptrdiff_t)d), or nil where it raises
        local d = tonumber(x)
        if d == nil then return nil end
        if d ~= d or d >= 2 ^ 63 or d < -2 ^ 63 then return 0 end
        if d >= 0 then d = floor(d) else d = ceil(d) end
        d = d % 2 ^ 32
        if d >= 2 ^ 31 then d = d - 2 ^ 32 end
        return d
    end
    local function checked_unpack(...)
        local t, i, e = ...
        if type(t) == "table" then
            local n = select("#", ...)
            if n < 2 or i == nil then i = 1 else i = c_int(i) end
            if n < 3 or e == nil then e = #t else e = c_int(e) end
            if i and e and i <= e and e - i >= 2 ^ 31 - 1 then error("too many results to unpack", 0) end
        end
        return real_unpack(...)
    end
    wrapped[#wrapped + 1] = {G, "unpack", wrap_named(checked_unpack), wrap(checked_unpack)}
    add(string, "byte", wrap)
    wrapped[#wrapped + 1] = {
        coroutine, "resume",
        function(...)
            if type((...)) ~= "thread" then return keep(rethrow(real_pcall(coresume, ...))) end
            local c = arm((...))
            return resumed((...), disarm(c, coresume(...)))
        end,
        function(...)
            if type((...)) ~= "thread" then return keep(rethrow(real_pcall(coresume, ...))) end
            local c = arm((...))
            return long_results(resumed((...), disarm(c, coresume(...))))
        end,
    }
    add(coroutine, "yield", function(yield)  -- (no pcall: a yield cannot cross one)
        return function(...) return long_results(yield(...)) end
    end)
    wrapped[#wrapped + 1] = {coroutine, "wrap", checked_cowrap, wrapped_cowrap}
    -- table.insert writes with lua_rawseti, past a read-only proxy's
    -- __newindex (and into the empty globals table), where Redis's patched
    -- Lua refuses the write itself: into those it runs on an empty table
    -- (for the argument errors, which come first), then refuses.  An insert
    -- that cannot fail (a value, or a number position and a value) goes
    -- straight on; any other under pcall, so that its errors are the C
    -- function's.  Its arguments stay ``...``, so that none given is still
    -- "no value" (``table.insert()``), not nil.  (table.remove and
    -- table.sort write nothing into a table of no array items, as every
    -- protected table is; no other library function writes into a table
    -- it is given.)
    local real_insert, real_type, select = table.insert, type, select
    rawset(table, "insert", function(...)
        local t = ...
        if readonly[t] == nil and t ~= G then
            if real_type(t) == "table" then
                local n = select("#", ...)
                if n == 2 or (n == 3 and real_type((select(2, ...))) == "number") then return real_insert(...) end
            end
            return keep(rethrow(real_pcall(real_insert, ...)))
        end
        keep(rethrow(real_pcall(real_insert, {}, select(2, ...))))
        error("Attempt to modify a readonly table", 0)
    end)
    for _, w in ipairs(wrapped) do rawset(w[1], w[2], w[4]) end
    -- Redis's read-only tables hold their fields, where shardkv's are
    -- empty views (_G of the hidden globals, each library of its real
    -- table): rawget, next and pairs read the table a view shows, so that
    -- a script finds what Redis's finds (``rawget(_G, 'ARGV')``,
    -- ``pairs(_G)``, ``pairs(string)``).  On a table they cannot fail but
    -- for next's "invalid key to 'next'", which names no line (a runtime
    -- error in C): called straight; anything else under pcall, so that
    -- their argument errors are the C functions'.
    local real_rawget, real_next = rawget, next
    local function shown(t)
        if t == G then return open_globals() end
        return readonly[t]
    end
    local function sandbox_next(...)
        local t, k = ...
        if real_type(t) == "table" then return real_next(shown(t) or t, k) end
        return keep(rethrow(real_pcall(real_next, ...)))
    end
    G.next = sandbox_next
    G.rawget = function(...)
        local t, k = ...
        if real_type(t) == "table" and select("#", ...) >= 2 then return real_rawget(shown(t) or t, k) end
        return keep(rethrow(real_pcall(real_rawget, ...)))
    end
    -- pairs gives next as its own C function, another than the global
    -- (Lua 5.1's base library makes two): here the real one, at no cost
    -- per step, but for a view, whose steps go through a wrapper of the
    -- same.
    local pairs_next = pairs({})
    local function view_next(t, k)
        return real_next(shown(t) or t, k)
    end
    G.pairs = function(...)
        local t = ...
        if real_type(t) == "table" then
            if t == G or readonly[t] then return view_next, t, nil end
            return pairs_next, t, nil
        end
        return keep(rethrow(real_pcall(pairs, ...)))
    end
    as_c_function = function(f, check)
        -- f after check(...) (which raises as it likes), its errors as f's
        -- own in the script would be (the prelude's rawset, setmetatable)
        return function(...)
            check(...)
            return keep(rethrow(real_pcall(f, ...)))
        end
    end
end
-- lupa's C function that calls a Python object (its metatable's __call).
local pyobject_call = getmetatable(pyraise).__call
local function refused_wide(i)
    -- Did lupa refuse redis.call or redis.pcall (the C function at this
    -- level of the handler's caller) for the number of its arguments?
    if wide or not i or i.func ~= pyobject_call then return false end
    local _, callee = dbg.getlocal(3, 1)
    return (rawequal(callee, pyraise) or rawequal(callee, pycall)) and dbg.getlocal(3, WIDE) ~= nil
end

-- Redis 7's pcall: an error table comes back as its message.
local real_pcall = pcall
local function pcall_result(ok, ...)
    if ok then return ok, ... end
    local e = unwrap((...))
    if type(e) == "table" then
        local m = rawget(e, "err")
        if type(m) == "string" then e = m end
    end
    return false, e
end
local real_error, gsub = error, string.gsub
local function unnamed(ok, ...)
    -- A Python callable (a C function to scripts) that pcall called has no
    -- name in its argument errors: luaL_argerror's '?'.
    if ok then return ok, ... end
    local e = unwrap((...))
    if type(e) == "string" then e = gsub(e, "^(bad argument #%d+ to )'[^']*'", "%1'?'", 1) end
    return false, e
end
G.pcall = function(...)
    local n = select("#", ...)
    -- Redis 7's luaRedisPcall puts a boolean below the arguments and calls
    -- what is at the bottom: with none, that boolean.
    if n == 0 then return false, "attempt to call a boolean value" end
    local f = ...
    if f == real_error and n >= 3 then
        -- error's level counts this function too: one more for level 2 or
        -- more, so that it names the line that called pcall (luaL_where)
        local level = tonumber((select(3, ...)))
        if level and level >= 2 then return pcall_result(real_pcall(f, (select(2, ...)), level + 1)) end
    end
    if type(f) == "userdata" then return pcall_result(unnamed(real_pcall(...))) end
    return pcall_result(real_pcall(...))
end
redis.sha1hex = pysha1
local function push_error(s)
    -- luaPushErrorBuff: "-CODE msg" keeps its code, "msg" gets ERR.
    local code, msg
    if s:sub(1, 1) == "-" then
        local sp = s:find(" ", 1, true)
        if sp then code, msg = s:sub(2, sp - 1), s:sub(sp + 1) else code, msg = "ERR", s:sub(2) end
    else
        code, msg = "ERR", s
    end
    msg = msg:gsub("^[\r\n]+", ""):gsub("[\r\n]+$", "")
    return {err = code .. " " .. msg}
end
redis.error_reply = function(...)
    local s = ...
    if select("#", ...) ~= 1 or type(s) ~= "string" then
        return push_error("wrong number or type of arguments")
    end
    if s:sub(1, 1) ~= "-" then s = "-" .. s end
    return push_error(s)
end
redis.status_reply = function(...)
    local s = ...
    if select("#", ...) ~= 1 or type(s) ~= "string" then
        return push_error("wrong number or type of arguments")
    end
    return {ok = s}
end
-- These raise from Python (C level), so that the error names the script's line.
redis.log = pylog
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.setresp = pysetresp
redis.set_repl = pysetrepl
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = function(...)
    if select("#", ...) == 0 then raise(push_error("Please specify at least one argument for this redis lib call")) end
    local ok = pycall(nil, ...)
    if ok == nil then raise(push_error("Invalid command passed to redis.acl_check_cmd()")) end
    return ok
end
redis.REDIS_VERSION = libs.version
redis.REDIS_VERSION_NUM = libs.version_num
G.redis = redis

-- What a library's code sees while FUNCTION LOAD runs it (Redis's load-time API).
local load_redis = {
    register_function = pyregister,
    log = pylog,
    LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
    REDIS_VERSION = libs.version,
    REDIS_VERSION_NUM = libs.version_num,
}

-- Redis's math.random and math.randomseed (redisLrand48, the same
-- sequence on every machine): C-level callables, as Redis's are, so that
-- their errors name the script's line.
math.random = pyrandom
math.randomseed = pyrandomseed

for name, lib in pairs(libs.modules) do G[name] = lib end

-- Redis's error handler: {err=..., source=..., line=...}.
local function handler(err)
    local from_library = false
    if type(err) == "userdata" then
        if plain_userdata[err] then
            err = plain_userdata[err]  -- (Redis's handler: 'ERR ' .. tostring(err))
        else
            local t = pytake()
            if t ~= nil then err = t else err, from_library = tostring(err), true end
        end
    end
    local level = 2
    local i = dbg.getinfo(level, "nSlf")
    if type(err) == "string" and refused_wide(i) then
        pywiden()  -- the script runs again with the wide forms
    end
    local raiser = i
    while i and (i.what == "C" or i.source == "=prelude") do
        level = level + 1
        i = dbg.getinfo(level, "nSl")
    end
    if type(err) ~= "table" then
        -- A library's error names the line that called it, as luaL_error
        -- does, and its argument error the function as it was called
        -- (luaL_argerror: ``local f = math.random f('x')`` names 'f').
        if from_library and i and level == 3 then
            err = i.short_src .. ":" .. tostring(i.currentline) .. ": " .. argerror_named(err, raiser)
        end
        -- So does coroutine.resume's "too many results to resume" (its C
        -- function, which the prelude's resume calls straight, names no
        -- line there).
        if raiser and raiser.func == coresume_c and type(err) == "string" and i and i.what ~= "tail" then
            err = i.short_src .. ":" .. tostring(i.currentline) .. ": " .. err
        end
        err = {err = "ERR " .. tostring(err)}
    end
    if i and i.what ~= "tail" then  -- a lost tail call has no line to name
        err.source = i.source
        err.line = i.currentline
    end
    return err
end

-- The script's xpcall: its handler gets what Redis's would, the error table
-- redis.call raised (taken here, so that none stays held for a later
-- error to find) and a library's message at the line that called it
-- (luaL_error's).  Anything else, as it was raised.
local real_xpcall = xpcall
local function xpcall_value(e)
    if type(e) ~= "userdata" or plain_userdata[e] then return e end
    local t = pytake()
    if t ~= nil then return t end
    e = tostring(e)
    -- (levels as the handler's, one deeper: this function's caller's)
    local raiser = dbg.getinfo(3, "nSlf")
    local level, i = 3, raiser
    while i and (i.what == "C" or i.source == "=prelude") do
        level = level + 1
        i = dbg.getinfo(level, "nSl")
    end
    if i and level == 4 then e = i.short_src .. ":" .. tostring(i.currentline) .. ": " .. argerror_named(e, raiser) end
    return e
end
G.xpcall = function(...)
    if select("#", ...) < 2 then
        -- luaB_xpcall's luaL_checkany, naming it as its caller did
        error("bad argument #2 to '" .. (dbg.getinfo(1, "n").name or "?") .. "' (value expected)", 2)
    end
    local f, h = ...
    return real_xpcall(f, function(e) return h(xpcall_value(e)) end)
end

-- The kill check: every 100000 instructions, as Redis's count hook.
local hook_count = 100000
local killed = {err = "ERR Script killed by user with SCRIPT KILL..."}
local function in_script()
    local info = dbg.getinfo(3, "S")
    return info ~= nil and info.source ~= "=prelude"
end
local function killed_line()
    if in_script() then error(killed, 0) end
end
local function hook()
    if pycheck() then
        -- From now on every line of the script raises, so that a pcall
        -- cannot go on (Redis's luaMaskCountHook re-arms itself on
        -- LUA_MASKLINE).  Whether or not this count fell in the script (it
        -- may keep falling in the prelude's functions that the script's
        -- loop calls, pcall's): its next line raises.
        sethook(killed_line, "l")
        if in_script() then error(killed, 0) end
    end
end

-- Global protection ----------------------------------------------------------
-- (readonly, above: proxy -> real table)

local function readonly_error()
    error("Attempt to modify a readonly table", 2)
end

local function protect(t)
    -- A read-only view of t: reads go through, writes raise.
    local proxy = {}
    readonly[proxy] = t
    setmetatable(proxy, {
        __index = t,
        __newindex = readonly_error,
        __metatable = false,
    })
    return proxy
end

for _, name in ipairs({"string", "math", "table", "coroutine", "redis", "cjson", "bit", "struct", "cmsgpack"}) do
    if rawget(G, name) ~= nil then rawset(G, name, protect(rawget(G, name))) end
end
local string_mt = getmetatable("")
string_mt.__index = rawget(G, "string")
string_mt.__metatable = protect({__index = rawget(G, "string")})

-- The Python callables are userdata; to scripts they are functions, as
-- Redis's C functions are, and never show lupa's metatable or Python's repr.
-- cjson.null is the one other userdata: Redis's NULL light userdata.
local real_type, real_tostring = type, tostring
local json_null = rawget(libs.modules.cjson, "null")
-- Their errors are the C functions' (luaL_checkany's, at the caller's
-- line: a tail call of one is a plain call, see luabytecode.py).
local function value_expected(n)
    local i = dbg.getinfo(2, "n")
    error("bad argument #1 to '" .. (i and i.name or "?") .. "' (value expected)", 3)
end
G.type = function(...)
    local x = ...
    local t = real_type(x)
    if t == "userdata" and not rawequal(x, json_null) then return "function" end
    if x == nil and select("#", ...) == 0 then value_expected() end
    return t
end
G.tostring = function(...)
    local x = ...
    if real_type(x) == "userdata" then return plain_userdata[x] or "function: builtin" end
    if x == nil and select("#", ...) == 0 then value_expected() end
    return real_tostring(x)
end
local real_getmetatable = getmetatable
G.getmetatable = function(...)
    local x = ...
    if type(x) == "userdata" then return nil end
    if x == nil and select("#", ...) == 0 then value_expected() end
    -- a read-only view shows its real table's (none, as Redis's libraries)
    local real = x ~= G and readonly[x]
    if real then return real_getmetatable(real) end
    return real_getmetatable(x)
end

local function writable(t)
    if readonly[t] ~= nil or t == G then error("Attempt to modify a readonly table", 0) end
end
-- Redis's patched lua_rawset and lua_setmetatable refuse a read-only
-- table, after luaB_rawset's and luaB_setmetatable's argument checks
-- (``rawset(_G)``: value expected): those come first, from the C function.
G.rawset = as_c_function(rawset, function(t, k, ...)
    if type(t) ~= "table" or select("#", ...) == 0 then return end
    writable(t)
    -- (lua_rawset's own errors name no line)
    if k == nil then error("table index is nil", 0) end
    if k ~= k then error("table index is NaN", 0) end
end)
G.setmetatable = as_c_function(setmetatable, function(...)
    local t, mt = ...
    local tm = type(mt)
    if type(t) == "table" and select("#", ...) >= 2 and (tm == "nil" or tm == "table") then writable(t) end
end)

-- Move every global into a hidden table, so that the globals table itself
-- (what _G, getfenv(0) and every script see) holds nothing and raises.
local globals = {}
for k, v in pairs(G) do globals[k] = v end
for k in pairs(globals) do G[k] = nil end
globals._G = G
for i = 1, #wrapped do
    if wrapped[i][1] == G then wrapped[i][1] = globals end  -- (unpack: widen swaps it there)
end
-- A one-key run with no arguments (engine.one_key) leaves its ARGV out
-- and sets this: the empty table is made here, on the script's first read
-- of ARGV, for the run alone (most such scripts never read it: one table
-- fewer to make, and to collect).
local argv_owed = false
local function owed_argv()
    argv_owed = false
    local t = {}
    rawset(globals, "ARGV", t)
    return t
end
-- A script's read of a global is a table's: G's __index is the hidden
-- table itself, whose own __index (a miss) raises.
setmetatable(globals, {
    __index = function(_, k)
        if argv_owed and k == "ARGV" then return owed_argv() end
        -- A read from C (lupa's) finds nothing rather than raising: an
        -- error there would abort the process.
        local caller = dbg.getinfo(2, "S")
        if caller == nil or caller.what == "C" then return nil end
        error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end,
})
open_globals = function()
    if argv_owed then owed_argv() end
    return globals
end
readonly[G] = globals
-- getmetatable(_G) shows, read-only, Redis's protected globals' metatable
-- (luaSetErrorMetatable), never the hidden table: its one field, __index,
-- is luaProtectedTableError, which raises whatever it is asked (a script
-- reaches it only by calling it: a read of a global goes to the hidden
-- table).
local shown_mt = {
    __index = function(...)
        if select("#", ...) ~= 2 then error("Wrong number of arguments to luaProtectedTableError", 2) end
        local _, k = ...
        local t = type(k)
        if t ~= "string" and t ~= "number" then
            error("Second argument to luaProtectedTableError must be a string or number", 2)
        end
        error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end,
}
setmetatable(G, {__index = globals, __newindex = readonly_error, __metatable = protect(shown_mt)})

-- Functions' globals: the load-time API while a library loads, the
-- scripts' globals when its functions run.
local load_redis_view = {}
readonly[load_redis_view] = load_redis
setmetatable(load_redis_view, {
    __index = function(_, k)
        local v = load_redis[k]
        if v == nil then
            error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
        end
        return v
    end,
    __newindex = readonly_error,
    __metatable = false,
})
local load_api = {redis = load_redis_view}
local loading = false
local FG = {}
setmetatable(FG, {
    __index = function(_, k)
        local v
        if loading then v = load_api[k] else v = rawget(globals, k) end
        if v == nil then
            local caller = dbg.getinfo(2, "S")
            if caller == nil or caller.what == "C" then return nil end
            error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
        end
        return v
    end,
    __newindex = readonly_error,
    __metatable = false,
})

-- The engine's entry points ----------------------------------------------------
local engine = {}

function engine.load_library(code, which)
    -- FUNCTION LOAD: compile and run a library's code; false and Redis's message on error.
    -- (``which``: as engine.compile's, 2 for a library whose functions run wide.)
    local f, err = loadstring(code, "@user_function")
    if not f then return false, "ERR Error compiling function: " .. tostring(err) end
    local patch = PATCHES[which]
    if patch then
        local patched = patch(string_dump(f))
        if patched then f = assert(loadstring(patched, "@user_function")) end
    end
    setfenv(f, FG)
    loading = true
    -- Redis gives a library's code 500 ms to run (LOAD_TIMEOUT_MS).
    local started = clock()
    local timeout = {err = "ERR FUNCTION LOAD timeout"}
    local function in_library()
        local info = dbg.getinfo(3, "S")
        return info ~= nil and info.source ~= "=prelude"
    end
    rearm(function()
        if clock() - started > 0.5 then
            sethook(function() if in_library() then error(timeout, 0) end end, "l")
            if in_library() then error(timeout, 0) end
        end
    end, hook_count)
    local ok, e = real_pcall(f)
    rearm(hook, hook_count)
    loading = false
    if ok then return true, false end
    if type(e) == "userdata" then
        local t = pytake()
        if t ~= nil then e = t else e = tostring(e) end
    end
    local msg
    if type(e) == "table" and type(rawget(e, "err")) == "string" then
        msg = rawget(e, "err")
    else
        msg = "ERR " .. tostring(e)
    end
    return false, "ERR Error registering functions: " .. msg
end

function engine.compile(body, name, which)
    -- Its bytecode goes through PATCHES[which] (1 narrow, 2 wide), which
    -- keeps frames in some tail calls (those of redis.call in a script that
    -- runs wide: see WIDE above; those that may reach a wrapper in one that
    -- does not), or answers nil when it changed nothing.  The patch is named
    -- by number: a Python object passed into Lua with every script could
    -- come back as another one (lupa 2.8's reference table).
    local f, err = loadstring(body, name)
    if not f then return nil, err end
    local patch = PATCHES[which]
    if patch then
        local patched = patch(string_dump(f))
        if patched then f = assert(loadstring(patched, name)) end
    end
    setfenv(f, G)
    return f, false
end

local function split(nkeys, ...)
    -- Every argument is a string: no holes.  Or one table of them all,
    -- where there are more than one call from C may pass (Engine._invoke:
    -- LUAI_MAXCSTACK).
    local all = ...
    if type(all) ~= "table" then
        if nkeys == 1 then return {all}, {select(2, ...)} end  -- the usual case
        all = {...}
    end
    local n = #all
    if nkeys == 0 then return {}, all end
    if nkeys == n then return all, {} end
    local keys, argv = {}, {}
    for i = 1, nkeys do keys[i] = all[i] end
    for i = nkeys + 1, n do argv[i - nkeys] = all[i] end
    return keys, argv
end

-- The count hook stays on between scripts: it costs nothing until it fires.
rearm(hook, hook_count)

local function widen(on)
    -- The wide forms of redis.call and redis.pcall (true), or the usual ones.
    -- Only rawsets: nothing here can fail, so a wide run always ends narrow.
    wide = on
    if on then
        redis.call, redis.pcall, redis.sha1hex = wide_call, wide_pcall, wide_sha1hex
    else
        redis.call, redis.pcall, redis.sha1hex = pyraise, narrow_pcall, pysha1
    end
    for i = 1, #wrapped do
        local w = wrapped[i]
        rawset(w[1], w[2], on and w[3] or w[4])
    end
end

-- A script marked wide (scripting.py's FLAG_WIDE) runs through the _wide
-- forms of engine.run, engine.call and engine.one_key: they swap the wide
-- forms in and out here, in the same call from Python, rather than in two
-- more calls from Python around the run (each a crossing of lupa's).

function engine.run(f, nkeys, ...)
    -- EVAL: KEYS and ARGV are globals
    globals.KEYS, globals.ARGV = split(nkeys, ...)
    local ok, r = xpcall(f, handler)
    return ok, r
end

function engine.run_wide(f, nkeys, ...)
    globals.KEYS, globals.ARGV = split(nkeys, ...)
    widen(true)
    local ok, r = xpcall(f, handler)
    widen(false)
    return ok, r
end

function engine.rewide(f)
    -- An EVAL script compiled narrow, compiled again as one that runs wide
    -- (engine.compile's patch 2): it runs wide from now on.
    local patched = PATCHES[2](string_dump(f))
    if not patched then return f end
    local g = assert(loadstring(patched))
    setfenv(g, G)
    return g
end

function engine.one_key(f, wide_run)
    -- EVAL of one key, the usual case: engine.run of ``f`` with nkeys 1
    -- (engine.run_wide's if ``wide_run``), called with the key and the
    -- arguments only (each value Python hands over costs the crossing).
    -- Each answers the script's value alone (one value: lupa makes no tuple
    -- of it), or false and the error (a tuple).  Three entries: the first
    -- for a run with no arguments, whose ARGV is made only if the script
    -- reads it (argv_owed), the second for a run with one argument (a
    -- lock's token), the third for a run with any number of them.
    if wide_run then
        local some = function(key, ...)
            globals.KEYS, globals.ARGV = {key}, {...}
            widen(true)
            local ok, r = xpcall(f, handler)
            widen(false)
            if ok then return r end
            return false, r
        end
        return function(key)
            globals.KEYS, globals.ARGV = {key}, nil
            argv_owed = true
            widen(true)
            local ok, r = xpcall(f, handler)
            widen(false)
            argv_owed = false
            if ok then return r end
            return false, r
        end, some, some
    end
    -- A script that reads its KEYS only to index it at once, and no
    -- global that could reach it otherwise (pyindexed, from its bytecode:
    -- luabytecode.only_indexed), never holds the table: no code sees
    -- it but the run's own indexing, so every run takes this one table of
    -- the script's again, its key put at 1, where another run made one (a
    -- table less to make, and to collect; a script that can hold its KEYS
    -- must get a table of its own, which a later run cannot change).
    -- The key is taken out again after the run (false, as it was made):
    -- a cached script's table must not keep its last key alive until its
    -- next run, as a fresh table left to the collector does not.  The
    -- same for its ARGV in a run of one argument (nil after the run, so
    -- that #ARGV stays the run's count).
    local keys, argv = nil, nil
    local ok, dump, argv_indexed = pcall(string_dump, f)
    if ok then ok, dump, argv_indexed = pcall(pyindexed, dump) end
    if ok and dump == true then keys = {false} end
    if ok and argv_indexed == true then argv = {} end
    local some = function(key, ...)
        if keys then keys[1] = key else key = {key} end
        globals.KEYS, globals.ARGV = keys or key, {...}
        local ok, r = xpcall(f, handler)
        if keys then keys[1] = false end
        if ok then return r end
        return false, r
    end
    local one = some
    if argv then
        one = function(key, arg)
            if keys then keys[1] = key else key = {key} end
            argv[1] = arg
            globals.KEYS, globals.ARGV = keys or key, argv
            local ok, r = xpcall(f, handler)
            if keys then keys[1] = false end
            argv[1] = nil
            if ok then return r end
            return false, r
        end
    end
    if keys then
        return function(key)
            keys[1] = key
            globals.KEYS, globals.ARGV = keys, nil
            argv_owed = true
            local ok, r = xpcall(f, handler)
            argv_owed = false
            keys[1] = false
            if ok then return r end
            return false, r
        end, one, some
    end
    return function(key)
        globals.KEYS, globals.ARGV = {key}, nil
        argv_owed = true
        local ok, r = xpcall(f, handler)
        argv_owed = false
        if ok then return r end
        return false, r
    end, one, some
end

function engine.call(f, nkeys, ...)
    -- FCALL: the function gets the keys and arguments tables
    local keys, argv = split(nkeys, ...)
    local ok, r = xpcall(function() return f(keys, argv) end, handler)
    return ok, r
end

function engine.call_wide(f, nkeys, ...)
    local keys, argv = split(nkeys, ...)
    local run = function() return f(keys, argv) end
    widen(true)
    local ok, r = xpcall(run, handler)
    widen(false)
    return ok, r
end

-- Redis's EVAL state keeps its pcall error handler as a global (its
-- functions' state keeps it in the registry): a script sees it, can call
-- it, and pairs(_G) lists it.  Only seen: shardkv's handler is the one
-- above.  It behaves as Redis's: a string error becomes {err = "ERR ..."},
-- and the error table gets the source and line of the frame that raised
-- (past a C function's frame), in a chunk of the name Redis gives it.
local ERR_HANDLER = [[local getinfo = (...).getinfo
return function(e)
    local at = getinfo(2, "nSl")
    if at and at.what == "C" then at = getinfo(3, "nSl") end
    if type(e) ~= "table" then e = {err = "ERR " .. tostring(e)} end
    if at then e.source, e.line = at.source, at.currentline end
    return e
end
]]
function engine.eval_globals()
    local f = assert(loadstring(ERR_HANDLER, "@err_handler_def"))
    setfenv(f, G)
    rawset(globals, "__redis__err__handler", f(dbg))
end

function engine.function_globals()
    -- Redis 7.0's function library API (function_lua.c) is
    -- luaRegisterRedisAPI's alone: breakpoint, debug and
    -- replicate_commands are EVAL's (eval.c adds them), absent in FCALL.
    for _, k in ipairs({"breakpoint", "debug", "replicate_commands"}) do rawset(redis, k, nil) end
end

function engine.gc_step()
    -- Redis's evalGenericCommand: a step of the collector every 50 scripts
    -- (LUA_GC_CYCLE_PERIOD), rather than a full cycle now and then.
    collectgarbage("step", 50)
end

function engine.rearm()
    -- after engine.stop() or a kill: back to the ordinary count hook
    rearm(hook, hook_count)
end

function engine.kill()
    -- A kill read at a redis.call rather than at the count hook (the
    -- engine's _leave): from now on every line of the script raises, as
    -- after the hook's kill (here and in every coroutine being resumed).
    hook_all(killed_line, "l")
end

-- What kind of reply a returned table is, read with rawget as Redis does.
function engine.stop()
    -- Every instruction from now on raises: the script ends, pcall or not
    -- (also in the coroutines it is in).
    hook_all(function()
        local info = dbg.getinfo(2, "S")
        if info and info.source ~= "=prelude" then error({err = "ERR script stopped"}, 0) end
    end, "", 1)
end

function engine.classify(t)
    -- (err, ok, big_number and a verbatim string's fields count only as
    -- strings: Redis checks lua_type, LUA_TSTRING, so {err=5} is an array)
    local e = rawget(t, "err")
    if type(e) == "string" then return "err", e, 0 end
    local ok = rawget(t, "ok")
    if type(ok) == "string" then return "ok", ok, 0 end
    local d = rawget(t, "double")
    if type(d) == "number" then
        if d == 0 and 1 / d < 0 then return "double", "-0", 0 end  -- (lupa hands Python -0 as 0)
        return "double", d, 0
    end
    local b = rawget(t, "big_number")
    if type(b) == "string" then return "big_number", b, 0 end
    local v = rawget(t, "verbatim_string")
    if type(v) == "table" then
        local fmt, s = rawget(v, "format"), rawget(v, "string")
        if type(fmt) == "string" and type(s) == "string" then
            return "verbatim", {fmt, s}, 0
        end
    end
    local m = rawget(t, "map")
    if type(m) == "table" then
        local flat, n = {}, 0
        local k, val = next(m)
        while k ~= nil do
            flat[n + 1], flat[n + 2] = k, val
            n = n + 2
            k, val = next(m, k)
        end
        return "map", flat, n
    end
    local s = rawget(t, "set")
    if type(s) == "table" then
        local flat, n = {}, 0
        local k = next(s)
        while k ~= nil do
            n = n + 1
            flat[n] = k
            k = next(s, k)
        end
        return "set", flat, n
    end
    local arr, n = {}, 0
    while true do
        local x = rawget(t, n + 1)
        if x == nil then break end
        n = n + 1
        arr[n] = x
    end
    return "array", arr, n
end

function engine.error_info(e)
    -- luaExtractErrorInformation
    if type(e) ~= "table" then return false, false, false end
    local msg, source, line = rawget(e, "err"), rawget(e, "source"), rawget(e, "line")
    if type(msg) == "number" then msg = tostring(msg) end
    if type(msg) ~= "string" then msg = false end
    if type(source) ~= "string" then source = false end
    if type(line) == "number" then line = tostring(line) end
    if type(line) ~= "string" then line = false end
    return msg, source, line
end

engine.held = held

function engine.table(...)
    return {...}
end

function engine.set_global(k, v)
    globals[k] = v
end

function engine.get_global(k)
    return rawget(globals, k)
end

-- lupa looks the global ``debug`` up (for a traceback handler) on every
-- call from Python, in the thread's globals table, which is G: a call of
-- the protected globals' __index each time.  The thread gets an empty
-- table of its own instead, where that is a plain miss (no handler, as
-- before).  Scripts, libraries and the prelude keep G (FG) as their
-- globals (setfenv, and loadstring above); nothing a script can reach
-- leads to this table (getfenv and debug are gone).
setfenv(0, setmetatable({}, {__newindex = readonly_error, __metatable = false}))

return engine
