# placeholder: the train stage fills this file
