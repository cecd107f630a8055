"""sqlml: Aurora-MySQL-style machine learning from SQL for stock MariaDB and MySQL.

The server loads native/sqlml.so, which embeds CPython and calls sqlml.bridge; the
engine, the AWS service clients and the type rules live in this package.
"""

__version__ = "0.1.0"
