# placeholder: the report stage fills this file
