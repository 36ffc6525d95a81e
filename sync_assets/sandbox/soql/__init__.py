"""The sandbox's SOQL subset: lexer, parser, and a compiler to parameterised SQLite SQL."""
