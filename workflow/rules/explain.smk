# placeholder: the explain stage fills this file
