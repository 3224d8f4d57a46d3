"""What every reader object that holds an HDF5 file open shares (StudyFile, MapsFile)."""


class H5View:
    """A reader holding `self._h5` (an open h5py File): a context manager; `close()` releases the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._h5.close()
