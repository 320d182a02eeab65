"""SQL over raw category files and over the UDB: ess query and udbsql (issue 18)."""
