package warehouse

// LatestVersion is the schema version Migrate brings a database to.
func LatestVersion() uint32 { return migrations[len(migrations)-1].version }

// NumVersions is how many schema versions there are.
func NumVersions() int { return len(migrations) }

// MigrateTo brings database to schema version v, as an older release left it.
var MigrateTo = migrate
