"""Redis's error replies, verbatim, in one place.

Each constant is the exact text Redis 7.0 sends after the leading ``-``.
Templates take ``%`` arguments.  Both the acceptor and the workers import
this module; it imports nothing.
"""

# -- command table and arguments ---------------------------------------------
UNKNOWN_COMMAND = "ERR unknown command '%s', with args beginning with: %s"
UNKNOWN_SUBCOMMAND = "ERR unknown subcommand '%s'. Try %s HELP."
SUBCOMMAND_SYNTAX = "ERR unknown subcommand or wrong number of arguments for '%s'. Try %s HELP."
WRONG_ARITY = "ERR wrong number of arguments for '%s' command"
CLUSTER_DISABLED = "ERR This instance has cluster support disabled"
SYNTAX = "ERR syntax error"
NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
INVALID_EXPIRE = "ERR invalid expire time in '%s' command"
OVERFLOW = "ERR increment or decrement would overflow"
INCR_NAN_INF = "ERR increment would produce NaN or Infinity"
STRING_TOO_LONG = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_OUT_OF_RANGE = "ERR offset is out of range"
BIT_OFFSET = "ERR bit offset is not an integer or out of range"
BIT_VALUE = "ERR bit is not an integer or out of range"
BITPOS_BIT = "ERR The bit argument must be 1 or 0."
BITOP_NOT_ONE_KEY = "ERR BITOP NOT must be called with a single source key."
BITFIELD_TYPE = (
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."
)
BITFIELD_OVERFLOW = "ERR Invalid OVERFLOW type specified"
BITFIELD_RO_GET_ONLY = "ERR BITFIELD_RO only supports the GET subcommand"
NO_SUCH_KEY = "ERR no such key"
INDEX_OUT_OF_RANGE = "ERR index out of range"
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NX_XX_GT_LT = "ERR NX and XX, GT or LT options at the same time are not compatible"
GT_LT_NX = "ERR GT, LT, and/or NX options at the same time are not compatible"
XX_NX = "ERR XX and NX options at the same time are not compatible"
MIN_MAX_NOT_FLOAT = "ERR min or max is not a float"
MIN_MAX_NOT_STRING = "ERR min or max not valid string range item"
HASH_NOT_FLOAT = "ERR hash value is not a float"
HASH_NOT_INTEGER = "ERR hash value is not an integer"
NOT_POSITIVE = "ERR value is out of range, must be positive"
TIMEOUT_NOT_FLOAT = "ERR timeout is not a float or out of range"
TIMEOUT_NEGATIVE = "ERR timeout is negative"
INVALID_CURSOR = "ERR invalid cursor"
DB_INDEX_OUT_OF_RANGE = "ERR DB index is out of range"
# shardkv's own: a WATCHed or blocking EXEC runs on one shard in one database.
INVALID_FIRST_DB = "ERR invalid first DB index"
INVALID_SECOND_DB = "ERR invalid second DB index"
SELECT_NOT_ALLOWED = "ERR SELECT is not allowed in cluster mode"
NUMKEYS_ZERO = "ERR numkeys should be greater than 0"
NUMKEYS_MORE = "ERR Number of keys can't be greater than number of args"
VALUE_NAN_INF = "ERR value is NaN or Infinity"
VALUE_OUT_OF_RANGE = "ERR value is out of range"
VALUE_OUT_OF_RANGE_BETWEEN = "ERR value is out of range, value must between %d and %d"
LIMIT_NEGATIVE = "ERR LIMIT can't be negative"
COUNT_POSITIVE = "ERR count should be greater than 0"
AT_LEAST_ONE_KEY = "ERR at least 1 input key is needed for '%s' command"

# -- lists -------------------------------------------------------------------
LPOS_RANK_ZERO = (
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
    "or use negative to start from the end of the list"
)
LPOS_COUNT_NEGATIVE = "ERR COUNT can't be negative"
LPOS_MAXLEN_NEGATIVE = "ERR MAXLEN can't be negative"

# -- sorted sets -------------------------------------------------------------
ZADD_INCR_PAIRS = "ERR INCR option supports a single increment-element pair"
SCORE_NAN = "ERR resulting score is not a number (NaN)"
WEIGHT_NOT_FLOAT = "ERR weight value is not a float"
WITHSCORES_BYLEX = "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
LIMIT_NEEDS_BY = "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"

# -- HyperLogLog, geo, SORT ---------------------------------------------------
HLL_WRONGTYPE = "WRONGTYPE Key is not a valid HyperLogLog string value."
HLL_CORRUPTED = "INVALIDOBJ Corrupted HLL object detected"
GEO_INVALID_PAIR = "ERR invalid longitude,latitude pair %f,%f"
GEO_UNIT = "ERR unsupported unit provided. please use M, KM, FT, MI"
GEO_NEED_RADIUS = "ERR need numeric radius"
GEO_NEGATIVE_RADIUS = "ERR radius cannot be negative"
GEO_NEED_WIDTH = "ERR need numeric width"
GEO_NEED_HEIGHT = "ERR need numeric height"
GEO_NEGATIVE_BOX = "ERR height or width cannot be negative"
GEO_NO_MEMBER = "ERR could not decode requested zset member"
GEO_COUNT = "ERR COUNT must be > 0"
GEO_STORE_WITH = "ERR %s is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
GEO_NEED_FROM = "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for %s"
GEO_NEED_BY = "ERR exactly one of BYRADIUS and BYBOX can be specified for %s"
GEO_ANY_COUNT = "ERR the ANY argument requires COUNT argument"
SORT_NOT_DOUBLE = "ERR One or more scores can't be converted into double"
SORT_BY_DENIED = "ERR BY option of SORT denied due to insufficient ACL permissions."
SORT_GET_DENIED = "ERR GET option of SORT denied due to insufficient ACL permissions."

# -- connection and server ---------------------------------------------------
NOAUTH = "NOAUTH Authentication required."
NOAUTH_HELLO = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
AUTH_NOT_CONFIGURED = (
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
NOPROTO = "NOPROTO unsupported protocol version"

# -- ACL users (acl.c) --------------------------------------------------------
NOPERM_COMMAND = "NOPERM this user has no permissions to run the '%s' command"
NOPERM_KEY = "NOPERM this user has no permissions to access one of the keys used as arguments"
NOPERM_CHANNEL = "NOPERM this user has no permissions to access one of the channels used as arguments"
# EXEC's reply to a queued command that the user's new ACL rules refuse
NOPERM_EXEC = (
    "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. "
    "This command is no longer allowed for the following reason: %s"
)
# ACL DRYRUN's replies (a bulk string, not an error)
DRYRUN_COMMAND = "This user has no permissions to run the '%s' command"
DRYRUN_KEY = "This user has no permissions to access the '%s' key"
DRYRUN_CHANNEL = "This user has no permissions to access the '%s' channel"
# redis.call's, when the script's user may not make the call (scriptVerifyACL)
ACL_SCRIPT_COMMAND = "The user executing the script can't run this command or subcommand"
ACL_SCRIPT_KEY = (
    "The user executing the script can't access at least one of the keys mentioned in the command arguments"
)
ACL_SCRIPT_CHANNEL = "The user executing the script can't publish to the channel mentioned in the command"
ACL_SETUSER = "ERR Error in ACL SETUSER modifier '%s': %s"
ACL_UNKNOWN_COMMAND = "Unknown command or category name in ACL"
ACL_SYNTAX = "Syntax error"
ACL_AFTER_ALLKEYS = (
    "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any "
    "effect. Try 'resetkeys' to start with an empty list of patterns"
)
ACL_AFTER_ALLCHANNELS = (
    "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have "
    "any effect. Try 'resetchannels' to start with an empty list of channels"
)
ACL_NO_SUCH_PASSWORD = "The password you are trying to remove from the user does not exist"
ACL_BAD_HASH = (
    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
)
ACL_FIRSTARG_OF_SUBCOMMAND = "Allowing first-arg of a subcommand is not supported"
# shardkv's own: selectors, ``(...)``, are not supported (see the README).
ACL_NO_SELECTORS = "Selectors are not supported by shardkv"
ACL_UNMATCHED_PARENTHESIS = "ERR Unmatched parenthesis in acl selector starting at '%s'."
ACL_USERNAME_SPACES = "ERR Usernames can't contain spaces or null characters"
ACL_DELETE_DEFAULT = "ERR The 'default' user cannot be removed"
ACL_UNKNOWN_CATEGORY = "ERR Unknown category '%s'"
ACL_GENPASS = "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096"
ACL_USER_NOT_FOUND = "ERR User '%s' not found"
ACL_COMMAND_NOT_FOUND = "ERR Command '%s' not found"
ACL_NO_FILE = (
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the "
    "ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file "
    "set) in order to store users in the Redis configuration."
)
MAX_CLIENTS = "ERR max number of clients reached"
MONITOR_KEYSPACE = "ERR Replica can't interact with the keyspace"
MONITOR_DENY_BLOCKING = "ERR MONITOR isn't allowed for DENY BLOCKING client"
SSUBSCRIBE_DENY_BLOCKING = "ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client"
PROTECTED_MODE = (
    "DENIED Redis is running in protected mode because protected mode is enabled and no password "
    "is set for the default user. In this mode connections are only accepted from the loopback "
    "interface. If you want to connect from external computers to Redis you may adopt one of the "
    "following solutions: 1) Just disable protected mode sending the command 'CONFIG SET "
    "protected-mode no' from the loopback interface by connecting to Redis from the same host the "
    "server is running, however MAKE SURE Redis is not publicly accessible from internet if you do "
    "so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the "
    "protected mode by editing the Redis configuration file, and setting the protected mode option "
    "to 'no', and then restarting the server. 3) If you started the server manually just for "
    "testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication "
    "password for the default user. NOTE: You only need to do one of the above things in order for "
    "the server to start accepting connections from the outside."
)
OOM = "OOM command not allowed when used memory > 'maxmemory'."
SHARD_UNAVAILABLE = "ERR shard unavailable"
# shardkv's own: a bug met while running a command (logged with its
# traceback); the process and the other clients go on.  The command is
# named as Redis's errors name a known one (commands.error_name: ``get``,
# ``config|set``), whatever its letter case as sent.
INTERNAL = "ERR internal error while running '%s'"
# shardkv's own, K > 1: another acceptor met a bug answering this one's
# question (logged there); the command that asked gets this.
BUS_ANSWER_FAILED = "ERR acceptor %d could not answer the '%s' question of another acceptor"
# A cross-shard operation abandoned because a shard died or refused it
# before the commit decision: nothing of it was applied, on any shard.
OP_ABORTED = "ERR shard unavailable; the operation was rolled back on every shard"
# The commit decision could not be recorded: nothing was applied.
OP_NOT_RECORDED = "ERR cannot record the commit decision (%s); the operation was rolled back on every shard"
CONFIG_UNKNOWN = "ERR Unknown option or number of arguments for CONFIG SET - '%s'"
NO_CONFIG_FILE = "ERR The server is running without a config file"
CONFIG_REWRITE_FAILED = "ERR Rewriting config file: %s"
CONFIG_SET_FAILED = "ERR CONFIG SET failed (possibly related to argument '%s') - %s"
CLIENT_NAME_SPACES = "ERR Client names cannot contain spaces, newlines or special characters."
NO_SUCH_CLIENT = "ERR No such client"
INVALID_COMMAND = "ERR Invalid command specified"
INVALID_COMMAND_ARGS = "ERR Invalid number of arguments specified for command"
INVALID_COMMAND_ARGUMENTS = "ERR Invalid arguments specified for command"
NO_KEY_ARGUMENTS = "ERR The command has no key arguments"
INVALID_CLIENT_ID = "ERR Invalid client ID"
CLIENT_ID_NOT_POSITIVE = "ERR client-id should be greater than 0"
CLIENT_PAUSE_MODE = "ERR CLIENT PAUSE mode must be WRITE or ALL"
CLIENT_UNBLOCK_REASON = "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
UNBLOCKED = "UNBLOCKED client unblocked via CLIENT UNBLOCK"
NO_SUCH_USER = "ERR No such user '%s'"
UNKNOWN_CLIENT_TYPE = "ERR Unknown client type '%s'"

# -- strings and keyspace ----------------------------------------------------
LCS_NOT_STRINGS = "ERR The specified keys must contain string values"
LCS_LEN_AND_IDX = "ERR If you want both the length and indexes, please just use IDX."
LCS_TOO_BIG = "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
DECREMENT_OVERFLOW = "ERR decrement would overflow"
SAME_OBJECT = "ERR source and destination objects are the same"
BUSYKEY = "BUSYKEY Target key name already exists."
DUMP_PAYLOAD = "ERR DUMP payload version or checksum are wrong"
MIGRATE_KEYS_NOT_EMPTY = (
    "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"
)
MIGRATE_CONNECT = "IOERR error or timeout connecting to the client"
MIGRATE_IO = "IOERR error or timeout %s to target instance"  # writing / reading
MIGRATE_TARGET = "ERR Target instance replied with error: %s"
BAD_DATA_FORMAT = "ERR Bad data format"
INVALID_TTL = "ERR Invalid TTL value, must be >= 0"
INVALID_IDLETIME = "ERR Invalid IDLETIME value, must be >= 0"
INVALID_FREQ = "ERR Invalid FREQ value, must be >= 0 and <= 255"
INT_OUT_OF_RANGE = "ERR value is out of range, value must between -2147483648 and 2147483647"
LFU_NOT_SELECTED = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that "
    "when switching between policies at runtime LRU and LFU data will take some time to adjust."
)
LRU_NOT_SELECTED = (
    "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that "
    "when switching between policies at runtime LRU and LFU data will take some time to adjust."
)

# -- transactions and pub/sub ------------------------------------------------
MULTI_NESTED = "ERR MULTI calls can not be nested"
EXEC_WITHOUT_MULTI = "ERR EXEC without MULTI"
DISCARD_WITHOUT_MULTI = "ERR DISCARD without MULTI"
WATCH_IN_MULTI = "ERR WATCH inside MULTI is not allowed"
EXECABORT = "EXECABORT Transaction discarded because of previous errors."
EXECABORT_BECAUSE = "EXECABORT Transaction discarded because of: %s"
SLOWLOG_COUNT = "ERR count should be greater than or equal to -1"
NOT_IN_MULTI = "ERR Command not allowed inside a transaction"
PROTECTED_COMMAND = (
    'ERR %s command not allowed. If the %s option is set to "local", you can run it from a '
    "local connection, otherwise you need to set this option in the configuration file, and "
    "then restart the server."
)
SUBSCRIBED_CONTEXT = (
    "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
    "are allowed in this context"
)

# -- protocol (each is sent, then the connection is closed) ------------------
PROTO_MULTIBULK_LEN = "ERR Protocol error: invalid multibulk length"
PROTO_BULK_LEN = "ERR Protocol error: invalid bulk length"
PROTO_EXPECTED_DOLLAR = "ERR Protocol error: expected '$', got '%s'"
PROTO_BIG_INLINE = "ERR Protocol error: too big inline request"
PROTO_UNBALANCED = "ERR Protocol error: unbalanced quotes in request"
PROTO_BIG_MBULK_COUNT = "ERR Protocol error: too big mbulk count string"
PROTO_BIG_BULK_COUNT = "ERR Protocol error: too big bulk count string"
PROTO_UNAUTH_MULTIBULK = "ERR Protocol error: unauthenticated multibulk length"
PROTO_UNAUTH_BULK = "ERR Protocol error: unauthenticated bulk length"

# -- scripting and functions ---------------------------------------------------
NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."
DEBUG_PACKED_THRESHOLD = "ERR argument must be a memory value bigger than 1 and smaller than 4gb"
SCRIPT_DEBUG_IN_MULTI = "ERR SCRIPT DEBUG must be called outside a pipeline"
SCRIPT_DEBUG_MODE = "ERR Use SCRIPT DEBUG YES/SYNC/NO"
# shardkv's own: it has no Lua debugger (LDB).
SCRIPT_DEBUG_UNSUPPORTED = "ERR SCRIPT DEBUG (the Lua debugger) is not supported by shardkv"
NUMKEYS_TOO_BIG = "ERR Number of keys can't be greater than number of args"
NUMKEYS_NEGATIVE = "ERR Number of keys can't be negative"
# While the shards load their data at start (shared.loadingerr).
LOADING = "LOADING Redis is loading the dataset in memory"
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
BUSY_FUNCTION = "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
NOTBUSY = "NOTBUSY No scripts in execution right now."
UNKILLABLE = (
    "UNKILLABLE Sorry the script already executed write commands against the dataset. You can "
    "either wait the script termination or kill the server in a hard way using the SHUTDOWN "
    "NOSAVE command."
)
# BGREWRITEAOF that cannot start (bgrewriteaofCommand's reply).
REWRITE_NOT_STARTED = (
    "ERR Can't execute an AOF background rewriting. Please check the server logs for more information."
)
# shardkv's own: a command Redis lets scripts call that the acceptor
# answers (INFO, SLOWLOG GET, LASTSAVE...), called where no acceptor can
# answer it (a shard driven without one, as the unit tests do).
SCRIPT_CALL_UNSUPPORTED = "ERR '%s' needs every shard and cannot be called from a script in shardkv"
SCRIPT_KILLED = "ERR Script killed by user with SCRIPT KILL..."
SCRIPT_RO_WRITE_FLAG = "ERR Can not execute a script with write flag using *_ro command."
# A script's shebang line (evalExtractShebangFlags) and its compile (luaCreateFunction).
SHEBANG_INVALID = "ERR Invalid script shebang"
SHEBANG_NO_ENGINE = "ERR Invalid engine in script shebang"
SHEBANG_ENGINE = "ERR Unexpected engine in script shebang: %s"
SHEBANG_OPTION = "ERR Unknown lua shebang option: %s"
SHEBANG_FLAG = "ERR Unexpected flag in script shebang: %s"
SCRIPT_COMPILE = "ERR Error compiling script (new function): %s"


class CommandError(Exception):
    """Raised by command code to reply with one of the errors above."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- streams (t_stream.c, blocked.c)
INVALID_STREAM_ID = "ERR Invalid stream ID specified as stream command argument"
XADD_ID_ZERO = "ERR The ID specified in XADD must be greater than 0-0"
XADD_EXHAUSTED = "ERR The stream has exhausted the last possible ID, unable to add more items"
XADD_ID_TOO_SMALL = "ERR The ID specified in XADD is equal or smaller than the target stream top item"
XADD_TOO_LARGE = "ERR Elements are too large to be stored"
MAXLEN_AND_MINID = "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
MAXLEN_NEGATIVE = "ERR The MAXLEN argument must be >= 0."
STREAM_LIMIT_NEGATIVE = "ERR The LIMIT argument must be >= 0."
LIMIT_WITHOUT_STRATEGY = "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
XTRIM_WITHOUT_STRATEGY = "ERR syntax error, XTRIM must be called with a trimming strategy"
LIMIT_WITHOUT_APPROX = "ERR syntax error, LIMIT cannot be used without the special ~ option"
INVALID_START_ID = "ERR invalid start ID for the interval"
INVALID_END_ID = "ERR invalid end ID for the interval"
XREAD_UNBALANCED = "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
XREAD_GROUP_OPTION = "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
XREAD_NOACK_OPTION = "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
XREADGROUP_NO_GROUP = "ERR Missing GROUP option for XREADGROUP"
XREADGROUP_NOGROUP = "NOGROUP No such key '%s' or consumer group '%s' in XREADGROUP with GROUP option"
XREADGROUP_DOLLAR = (
    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of "
    "this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would "
    "just return an empty result set."
)
XREAD_GREATER = (
    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option."
)
XREAD_BLOCK_IN_SCRIPT = "ERR %s command is not allowed with BLOCK option from scripts"
TIMEOUT_NOT_INTEGER = "ERR timeout is not an integer or out of range"
TIMEOUT_OUT_OF_RANGE = "ERR timeout is out of range"
ENTRIESREAD_RANGE = "ERR value for ENTRIESREAD must be positive or -1"
XGROUP_KEY_MISSING = (
    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to "
    "use the MKSTREAM option to create an empty stream automatically."
)
NOGROUP_FOR_KEY = "NOGROUP No such consumer group '%s' for key name '%s'"
BUSYGROUP = "BUSYGROUP Consumer Group name already exists"
XSETID_ENTRIES_ADDED_NEGATIVE = "ERR entries_added must be positive"
XSETID_BELOW_MAX_DELETED = "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"
XSETID_BELOW_TOP = "ERR The ID specified in XSETID is smaller than the target stream top item"
XSETID_ENTRIES_ADDED_SMALL = (
    "ERR The entries_added specified in XSETID is smaller than the target stream length"
)
NOGROUP_KEY_OR_GROUP = "NOGROUP No such key '%s' or consumer group '%s'"
XCLAIM_MIN_IDLE = "ERR Invalid min-idle-time argument for XCLAIM"
XCLAIM_IDLE = "ERR Invalid IDLE option argument for XCLAIM"
XCLAIM_TIME = "ERR Invalid TIME option argument for XCLAIM"
XCLAIM_RETRYCOUNT = "ERR Invalid RETRYCOUNT option argument for XCLAIM"
XCLAIM_OPTION = "ERR Unrecognized XCLAIM option '%s'"
XAUTOCLAIM_MIN_IDLE = "ERR Invalid min-idle-time argument for XAUTOCLAIM"
XAUTOCLAIM_COUNT = "ERR COUNT must be > 0"
NOGROUP_BLOCKED = "NOGROUP the consumer group this client was blocked on no longer exists"
UNBLOCKED_STREAM_DELETED = "UNBLOCKED the stream key no longer exists"

# -- disk errors (writeCommandsGetDiskErrorMessage) ----------------------------
MISCONF_AOF = "MISCONF Errors writing to the AOF file: %s"
# A coordinator's ``__hold`` of a shard it already holds (a bug in the acceptor).
ALREADY_HELD = "ERR shard already held by this acceptor"
MISCONF_RDB = (
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. "
    "Commands that may modify the data set are disabled, because this instance is configured to report "
    "errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). "
    "Please check the Redis logs for details about the RDB error."
)

# -- replication and modules, which shardkv does not have ---------------------
INVALID_MASTER_PORT = "ERR Invalid master port"
FAILOVER_NOT_RUNNING = "ERR No failover in progress."
FAILOVER_TIMEOUT = "ERR FAILOVER timeout must be greater than 0"
FAILOVER_NO_REPLICAS = "ERR FAILOVER requires connected replicas."
REPLCONF_OPTION = "ERR Unrecognized REPLCONF option: %s"
# shardkv's own: a master that cannot become a replica, nor serve one.
NO_REPLICATION = "ERR shardkv does not support replication (%s)"
MODULE_LOAD_FAILED = "ERR Error loading the extension. Please check the server logs."
MODULE_UNLOAD_FAILED = "ERR Error unloading module: no such module with that name"
