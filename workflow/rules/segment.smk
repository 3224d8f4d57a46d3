# placeholder: the segment stage fills this file
