package warehouse

import (
	"errors"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Refused reports whether err is ClickHouse refusing an INSERT for the rows
// it carries, so that the same rows will be refused again however often
// they are sent: a value a column cannot take, an expression of the table (a
// constraint, a MATERIALIZED or DEFAULT column) throwing on a row, too many
// partitions in one INSERT. Sending fewer rows at a time can get the others
// in (the sink bisects the batch down to the rows refused alone).
//
// Every other error is transient, and retrying the same rows is right: the
// network, timeouts, memory, back-pressure ("too many parts"), a read-only or
// lost replica, and what an operator must fix and that refuses every row
// alike (access rights, a missing table or column, a full disk). Only
// exceptions the server raised are judged by their code; an error of the
// client (connecting, encoding a column) is transient.
func Refused(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	if ex.Code == codeTooManyParts {
		// One code for two things: too many active parts (back-pressure:
		// wait for merges) and too many partitions in one INSERT (modern
		// ClickHouse's max_partitions_per_insert_block: send fewer).
		return strings.Contains(ex.Message, "partitions for single INSERT block")
	}
	return !transientCodes[ex.Code]
}

// codeTooManyParts is ClickHouse's TOO_MANY_PARTS.
const codeTooManyParts = 252

// transientCodes are the server exceptions that do not depend on the rows
// inserted (src/Common/ErrorCodes.cpp of ClickHouse).
var transientCodes = map[int32]bool{
	3:    true, // UNEXPECTED_END_OF_FILE
	23:   true, // CANNOT_READ_FROM_ISTREAM
	24:   true, // CANNOT_WRITE_TO_OSTREAM
	32:   true, // ATTEMPT_TO_READ_AFTER_EOF (a connection dropped mid-insert)
	33:   true, // CANNOT_READ_ALL_DATA
	74:   true, // CANNOT_READ_FROM_FILE_DESCRIPTOR
	75:   true, // CANNOT_WRITE_TO_FILE_DESCRIPTOR (a disk write failed)
	76:   true, // CANNOT_OPEN_FILE
	77:   true, // CANNOT_CLOSE_FILE
	8:    true, // THERE_IS_NO_COLUMN
	10:   true, // NOT_FOUND_COLUMN_IN_BLOCK
	16:   true, // NO_SUCH_COLUMN_IN_TABLE
	20:   true, // NUMBER_OF_COLUMNS_DOESNT_MATCH
	47:   true, // UNKNOWN_IDENTIFIER
	60:   true, // UNKNOWN_TABLE
	81:   true, // UNKNOWN_DATABASE
	159:  true, // TIMEOUT_EXCEEDED
	160:  true, // TOO_SLOW
	164:  true, // READONLY
	173:  true, // CANNOT_ALLOCATE_MEMORY
	192:  true, // UNKNOWN_USER
	193:  true, // WRONG_PASSWORD
	194:  true, // REQUIRED_PASSWORD
	195:  true, // IP_ADDRESS_NOT_ALLOWED
	198:  true, // DNS_ERROR
	201:  true, // QUOTA_EXCEEDED
	202:  true, // TOO_MANY_SIMULTANEOUS_QUERIES
	203:  true, // NO_FREE_CONNECTION
	204:  true, // CANNOT_FSYNC
	209:  true, // SOCKET_TIMEOUT
	210:  true, // NETWORK_ERROR
	218:  true, // TABLE_IS_DROPPED
	225:  true, // NO_ZOOKEEPER
	236:  true, // ABORTED
	241:  true, // MEMORY_LIMIT_EXCEEDED
	242:  true, // TABLE_IS_READ_ONLY
	243:  true, // NOT_ENOUGH_SPACE
	244:  true, // UNEXPECTED_ZOOKEEPER_ERROR
	252:  true, // TOO_MANY_PARTS (see Refused)
	254:  true, // NO_ACTIVE_REPLICAS
	279:  true, // ALL_CONNECTION_TRIES_FAILED
	285:  true, // TOO_FEW_LIVE_REPLICAS
	286:  true, // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
	289:  true, // REPLICA_IS_NOT_IN_QUORUM
	291:  true, // DATABASE_ACCESS_DENIED
	319:  true, // UNKNOWN_STATUS_OF_INSERT
	373:  true, // SESSION_IS_LOCKED
	394:  true, // QUERY_WAS_CANCELLED
	415:  true, // ALL_REPLICAS_LOST
	425:  true, // SYSTEM_ERROR
	439:  true, // CANNOT_SCHEDULE_TASK
	473:  true, // DEADLOCK_AVOIDED
	497:  true, // ACCESS_DENIED
	516:  true, // AUTHENTICATION_FAILED
	999:  true, // KEEPER_EXCEPTION
	1000: true, // POCO_EXCEPTION (network and I/O errors inside the server)
	1001: true, // STD_EXCEPTION (a C++ library error: a filesystem call such as "No space left on device", an allocation)
	1002: true, // UNKNOWN_EXCEPTION
}

// AccessDenied reports whether err is ClickHouse refusing the user's rights
// (ACCESS_DENIED, which modern servers raise for "Not enough privileges",
// and DATABASE_ACCESS_DENIED): what an operator must grant, not what a retry
// mends.
func AccessDenied(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	return ex.Code == 497 || ex.Code == 291
}
